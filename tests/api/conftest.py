"""One ``tableflow serve`` process with auth on, shared by the management API tests (each uses its own topics)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import AUTH, Server, create_topic
from tests.service import Service, write_config


@pytest.fixture(scope="session")
def server(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Clients ``admin``, ``writer``, ``reader``; one table from the config file (``kafka.file_owned``)."""
    root = tmp_path_factory.mktemp("api-server")
    topic = create_topic(bootstrap, prefix="file")
    file_table = {"topic": topic, "table": "kafka.file_owned", "format": "raw", "commit_interval_s": 0.5}
    port = write_config(root / "tableflow.yaml", root / "data", bootstrap, [file_table], auth=AUTH)
    service = Service(root / "tableflow.yaml", port, root / "service.log")
    with service.start():
        yield Server(service, root / "data", bootstrap, {"kafka.file_owned": topic})
