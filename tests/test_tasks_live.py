"""Live progress of a ``@task`` in a real worker, to the browser of the user it names."""

import pytest

from demo import tasks
from tests.conftest import StartRunworkers
from tests.test_live import (
    assert_quiet,
    messages_until,
    open_socket,
    serve_embedded,
    user,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def test_a_task_reports_progress_to_the_socket_of_the_user_it_names(
    start_runworkers: StartRunworkers,
) -> None:
    alice, bob = user("alice"), user("bob")
    _, port = serve_embedded(start_runworkers, workers=1)

    with open_socket(port, alice) as alice_ws, open_socket(port, bob) as bob_ws:
        result = tasks.count_to.enqueue(3, user_id=alice.pk)
        story = messages_until(alice_ws, "job.finished")
        job_id = int(result.id)
        assert {m["type"] for m in story[:-1]} == {"job.progress"}, story
        assert all(m["data"]["job"] == job_id for m in story), story
        assert story[-2]["data"] == {
            "job": job_id,
            "type": "demo.tasks.count_to",
            "current": 3,
            "total": 3,
            "message": "step 3 of 3",
        }
        assert (story[-1]["data"]["status"], story[-1]["data"]["result"]) == ("succeeded", 3)
        assert_quiet(bob_ws)
