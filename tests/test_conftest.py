"""The test helpers themselves, where they meet processes that come and go."""

import subprocess
from pathlib import Path

from tests.conftest import Runworkers


def test_children_skips_processes_that_exit_while_being_listed(tmp_path: Path) -> None:
    # A parent that starts and reaps short-lived children without pause, as runworkers does
    # at start-up: each one is often a zombie, or gone, when its command line is read.
    churn = subprocess.Popen(["bash", "-c", "while :; do /bin/true; done"])
    try:
        runner = Runworkers(churn, tmp_path / "unused.log")
        for _ in range(500):
            assert runner.children() == []
    finally:
        churn.kill()
        churn.wait()
