"""``tableflow demo --duration`` as a newcomer runs it: a real process, a real broker, rows in the table at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tableflow.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_timed_demo_fills_the_table_and_exits_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "tableflow.cli", "demo", "--duration", "30", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    final = re.search(r"^done: produced ([\d,]+) orders; kafka\.orders holds ([\d,]+) rows$", done.stdout, re.M)
    assert final, done.stdout
    produced, rows = (int(group.replace(",", "")) for group in final.groups())
    assert rows > 0
    assert rows == produced, "every delivered order should be in the table after the clean stop"
    live = re.findall(r"kafka\.orders: ([\d,]+) rows", done.stdout)
    assert any(int(count.replace(",", "")) > 0 for count in live), "the live view never showed a row"
    assert (tmp_path / "tableflow-data" / "demo" / "catalog.db").exists()
