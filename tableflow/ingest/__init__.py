"""The ingest pipeline: consume → decode → map → buffer → commit (see ``commit.py`` for the commit order)."""
