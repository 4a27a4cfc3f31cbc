"""Table maintenance: snapshot expiry, compaction of small files, manifests, orphans."""
