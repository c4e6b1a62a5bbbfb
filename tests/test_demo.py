"""The demo app's views: the job list and the JSON endpoint that starts demo jobs."""

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_quickworker.models import Status, WorkerJob


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user("alice")


@pytest.fixture
def alice(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_index_requires_login(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_index_lists_only_the_users_jobs(alice: Client, user: User) -> None:
    bob = User.objects.create_user("bob")
    mine = WorkerJob.objects.create(
        tag="mine", type="demo.countdown", user=user, due=timezone.now()
    )
    WorkerJob.objects.create(tag="theirs", type="demo.asyncSleep", user=bob, due=timezone.now())

    response = alice.get("/")

    assert response.status_code == 200
    assert list(response.context["jobs"]) == [mine]
    page = response.content.decode()
    assert f'id="job-{mine.pk}"' in page
    assert "<code>demo.countdown</code>" in page
    assert "<code>demo.asyncSleep</code>" not in page


@pytest.mark.django_db
def test_anonymous_post_is_redirected_and_writes_nothing(client: Client) -> None:
    response = client.post("/jobs/demo.add/", "{}", content_type="application/json")

    assert response.status_code == 302
    assert not WorkerJob.objects.exists()


def test_posting_json_starts_a_job_for_the_user(alice: Client, user: User) -> None:
    response = alice.post("/jobs/demo.add/", {"a": 1, "b": 2}, content_type="application/json")

    assert response.status_code == 201
    job = WorkerJob.objects.get()
    assert response.json() == {"id": job.pk, "type": "demo.add", "status": "scheduled"}
    assert job.user == user
    assert job.type == "demo.add"
    assert job.data == {"a": 1, "b": 2}
    assert job.status == Status.SCHEDULED


def test_an_empty_body_is_empty_data(alice: Client) -> None:
    response = alice.post("/jobs/demo.countdown/", "", content_type="application/json")

    assert response.status_code == 201
    assert WorkerJob.objects.get().data == {}


def test_data_that_is_not_a_dict_is_still_json(alice: Client) -> None:
    response = alice.post("/jobs/demo.add/", [1, 2], content_type="application/json")

    assert response.status_code == 201
    assert WorkerJob.objects.get().data == [1, 2]


def test_an_unknown_type_is_404(alice: Client) -> None:
    response = alice.post("/jobs/nope/", {"a": 1}, content_type="application/json")

    assert response.status_code == 404
    assert "'nope'" in response.json()["error"]
    assert not WorkerJob.objects.exists()


@pytest.mark.parametrize("body", ["{not json", "NaN", '{"a": Infinity}'])
def test_a_body_that_is_not_json_is_400(alice: Client, body: str) -> None:
    response = alice.post("/jobs/demo.add/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]
    assert not WorkerJob.objects.exists()


def test_get_is_not_allowed(alice: Client) -> None:
    assert alice.get("/jobs/demo.add/").status_code == 405


@pytest.mark.django_db
def test_the_sign_in_page_gives_the_demo_credentials(client: Client) -> None:
    page = client.get(reverse("admin:login")).content.decode()

    assert "Sign in as <strong>demo</strong>, password <strong>demo</strong>" in page
    assert 'id="login-form"' in page  # the admin's own form, below the line


def test_the_page_fits_a_phone_and_has_an_icon(alice: Client) -> None:
    page = alice.get("/").content.decode()

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<link rel="icon" href="/static/demo/favicon.svg" type="image/svg+xml">' in page
    assert finders.find("demo/favicon.svg")


def test_favicon_ico_leads_to_the_icon(client: Client) -> None:
    response = client.get("/favicon.ico")

    assert (response.status_code, response["Location"]) == (302, "/static/demo/favicon.svg")
