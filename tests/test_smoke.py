import pytest

from django_quickworker import submit_job


@pytest.mark.django_db
def test_submit_writes_a_row() -> None:
    job = submit_job(tag="smoke", type="demo.add", data={"a": 1, "b": 2})
    assert job.pk is not None
