"""``manage.py chaos --hosts 3``, briefly: on a throwaway PostgreSQL server of its own, three
hosts lose a worker, a parent, a whole tree, the server and (one of them) the network for
longer than the lease, one with its clock fast; no job is lost, and no more run twice than
were in flight on what was killed or cut off."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_manage

# The run's own server, whatever the tests' database: once, in the PostgreSQL envs. One to
# four minutes (the faults wait for leases to run out; worker starts are slow on a busy box).
pytestmark = [pytest.mark.postgresql, pytest.mark.heavy]


def test_chaos_with_three_hosts_loses_no_job(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    arguments = ["--hosts", "3", "--jobs", "400", "--workers", "1", "--json", str(report_path)]
    result = run_manage("chaos", *arguments, timeout=300)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    report = json.loads(report_path.read_text())
    assert (report["submitted"], report["succeeded"], report["lost"]) == (400, 400, 0), report
    assert report["run_more_than_once"] <= report["in_flight_at_faults"], report
    faults = {fault["fault"] for fault in report["faults"]}
    assert {
        "host killed (SIGKILL of its tree)",
        "parent killed, new runworkers",
        "server restarted",
        "host cut off for 10 s",
    } <= faults, report
    cut = next(fault for fault in report["faults"] if fault["fault"].startswith("host cut off"))
    assert "back_s" in cut, report
    assert [f["exit_code"] for f in report["faults"] if f["fault"] == "SIGTERM at the end"] == [
        0
    ] * 3
    assert "jobs lost                  0" in result.stdout
