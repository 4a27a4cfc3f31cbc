"""API-created tables survive a restart and continue exactly; a table the file also defines runs as the file says."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.support import Server, caught_up, create_topic, produce, rows, status_of
from tests.service import Service, write_config


def test_api_tables_come_back_after_a_restart_and_continue_exactly(bootstrap: str, tmp_path: Path) -> None:
    config, data_dir = tmp_path / "tableflow.yaml", tmp_path / "data"
    port = write_config(config, data_dir, bootstrap, [])
    service = Service(config, port, tmp_path / "service.log")
    server = Server(service, data_dir, bootstrap)
    live, held = create_topic(bootstrap, partitions=2), create_topic(bootstrap)
    live_id, held_id = (f"kafka.{t.replace('-', '_')}" for t in (live, held))
    values = [f"v{i}".encode() for i in range(60)]

    with service.start(), httpx.Client(base_url=service.url, timeout=90) as api:  # auth off: the embedded default
        for topic in (live, held):
            response = api.post("/api/v1/tables", json={"topic": topic, "format": "raw", "commit_interval_s": 0.3})
            assert response.status_code == 201, response.text
        produce(bootstrap, live, values[:30], partitions=2)
        caught_up(api, live_id, 30)
        assert api.post(f"/api/v1/tables/{held_id}/pause").json()["status"]["state"] == "paused"
    produce(bootstrap, live, values[30:], partitions=2)  # while the service is down

    with service.start(), httpx.Client(base_url=service.url, timeout=90) as api:
        tables = {item["identifier"]: item for item in api.get("/api/v1/tables").json()}
        assert set(tables) == {live_id, held_id}
        assert tables[live_id]["source"] == "api"
        assert tables[live_id]["config"]["commit_interval_s"] == 0.3
        caught_up(api, live_id, 30)  # the 30 produced while it was down, counted by the new process
        assert status_of(api, held_id)["state"] == "paused"  # a pause outlives the restart
    data = rows(server.table(live_id))
    assert sorted(value for *_, value in data) == sorted(values)
    assert len({(p, o) for p, o, _ in data}) == 60

    # The config file now defines the same table: the file wins, and says so.
    service.port = write_config(config, data_dir, bootstrap, [{"topic": live, "table": live_id, "format": "raw"}])
    with service.start(), httpx.Client(base_url=service.url, timeout=90) as api:
        table = api.get(f"/api/v1/tables/{live_id}").json()
        assert table["source"] == "file"
        assert table["config"]["commit_interval_s"] == 10.0  # the file's settings, not the API's
        assert api.delete(f"/api/v1/tables/{live_id}").json()["error"]["code"] == "file_owned"
    assert "the config file wins" in (tmp_path / "service.log").read_text()
