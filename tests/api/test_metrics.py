"""``/metrics`` parses as Prometheus text and carries every ``tableflow_*`` series with the right values."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.api.support import Server, caught_up, create_topic, produce


def test_metrics_carry_the_series_for_a_table(server: Server) -> None:
    topic = create_topic(server.bootstrap, partitions=2)
    identifier = f"kafka.{topic.replace('-', '_')}"
    with server.client() as api:
        api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "commit_interval_s": 0.3})
        produce(server.bootstrap, topic, [b"x" * 10] * 12, partitions=2)
        status = caught_up(api, identifier, 12)
    with server.client("reader") as reader:
        response = reader.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")

    dashboard = (Path(__file__).parents[2] / "deploy" / "grafana" / "tableflow.json").read_text()
    exprs = [t["expr"] for panel in json.loads(dashboard)["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"tableflow_\w+", expr)}
    exported = {s.name for family in text_string_to_metric_families(response.text) for s in family.samples}
    assert used <= exported, f"the dashboard queries series /metrics does not export: {used - exported}"

    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("table") == identifier:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "table"))
                samples.setdefault(sample.name, {})[labels] = sample.value

    def one(name: str, **labels: str) -> float:
        return samples[name][tuple(sorted(labels.items()))]

    assert one("tableflow_table_info", topic=topic, format="raw", source="api") == 1
    assert one("tableflow_table_state", state="running") == 1
    assert one("tableflow_table_state", state="paused") == 0
    assert one("tableflow_records_total") == 12
    assert one("tableflow_bytes_total") == 120
    assert one("tableflow_dlq_records_total") == 0
    assert one("tableflow_skipped_records_total") == 0
    assert one("tableflow_errors_total") == 0
    commits = one("tableflow_commits_total")
    assert commits == status["commits_total"] >= 1
    assert one("tableflow_commit_duration_seconds_count") == commits
    assert one("tableflow_commit_duration_seconds_bucket", le="+Inf") == commits
    assert one("tableflow_commit_duration_seconds_sum") > 0
    for partition in ("0", "1"):
        assert one("tableflow_lag_records", partition=partition) == 0
        assert one("tableflow_committed_offset", partition=partition) == 6
        assert one("tableflow_high_watermark", partition=partition) == 6
    assert one("tableflow_last_commit_timestamp_seconds") > 0
    assert 0 <= one("tableflow_seconds_since_last_commit") < 120
