"""Every change of a job's status is made in states.py: the ORM and the raw SQL take it there."""

import ast
from pathlib import Path

import django_quickworker

PACKAGE = Path(django_quickworker.__file__).parent
WRITES = {"update", "create", "bulk_create", "get_or_create", "update_or_create"}


def is_a_status(value: ast.expr) -> bool:
    """Whether ``value`` is ``Status.<name>`` or a variable (a status worked out before);
    not, say, ``job.status`` in a message about the job."""
    if isinstance(value, ast.Attribute):
        return isinstance(value.value, ast.Name) and value.value.id == "Status"
    return isinstance(value, ast.Name)


def status_assignments(source: str) -> list[int]:
    """The lines of ``source`` that write a status: a ``"status"`` key of a dict, a
    ``status=`` argument of an ORM write, ``x.status = …``, or ``status`` in an SQL SET."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            lines += [
                key.lineno
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and key.value == "status" and is_a_status(value)
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in WRITES:
                lines += [node.lineno for keyword in node.keywords if keyword.arg == "status"]
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [
                node.lineno
                for target in targets
                if isinstance(target, ast.Attribute) and target.attr == "status"
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.upper()
            if "SET " in text and "STATUS =" in text:
                lines.append(node.lineno)
    return sorted(lines)


def test_each_status_is_assigned_in_states_only() -> None:
    found = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts and (lines := status_assignments(path.read_text()))
    }
    assert set(found) == {"states.py"}, found


def test_the_finder_sees_each_kind_of_assignment() -> None:
    source = """
changes = {"status": Status.FAILED}
message = {"status": job.status}  # about a job, not a write
WorkerJob.objects.filter(pk=1).update(status=Status.CANCELLED)
job.status = Status.RUNNING
sql = f"UPDATE t SET status = '{Status.RUNNING}', worker = %s"
WorkerJob.objects.filter(status=Status.SCHEDULED)  # a condition, not a write
"""
    assert status_assignments(source) == [2, 4, 5, 6]
