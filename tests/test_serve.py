"""``runworkers --serve`` as a newcomer meets it: what it needs is checked and named, static
files are served in development, and the banner names the channel layer really in use.

Each test runs a real ``runworkers`` on the test project's settings, altered by a settings
module of its own. Embedded mode is for development, so these run on SQLite only.
"""

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from django_quickworker import submit_job
from tests.conftest import StartRunworkers
from tests.test_live import (
    COUNTDOWN,
    assert_a_countdown_story,
    free_port,
    messages_until,
    open_socket,
    user,
    wait_for_port,
)

pytestmark = pytest.mark.sqlite

FAST_POLL = '{"POLL_INTERVAL": 0.1}'


def altered_settings(tmp_path: Path, lines: str) -> dict[str, str]:
    """Environment for a runworkers whose settings are the test project's plus ``lines``."""
    module = tmp_path / "altered_settings.py"
    module.write_text(f"from testproject.settings import *  # noqa: F403\n\n{lines}\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {"DJANGO_SETTINGS_MODULE": "altered_settings", "PYTHONPATH": path, "REDIS_URL": ""}


def get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        ("del ASGI_APPLICATION", "--serve needs the ASGI_APPLICATION setting"),
        (
            "ASGI_APPLICATION = 'nowhere.asgi.application'",
            "ASGI_APPLICATION='nowhere.asgi.application' cannot be imported",
        ),
    ],
    ids=["missing", "unimportable"],
)
def test_what_serve_needs_is_named_without_a_traceback(
    start_runworkers: StartRunworkers, tmp_path: Path, lines: str, named: str
) -> None:
    runner = start_runworkers("--serve", str(free_port()), env=altered_settings(tmp_path, lines))

    assert runner.wait() == 1, runner.output
    assert f"CommandError: {named}" in runner.output
    assert "Traceback" not in runner.output
    assert "django-quickworker" not in runner.output  # stopped before the banner and workers


def test_serve_serves_static_files_when_debug_is_on(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    port = free_port()
    runner = start_runworkers("--serve", str(port), env=altered_settings(tmp_path, "DEBUG = True"))
    wait_for_port(port, lambda: runner.process.poll() is None, lambda: runner.output)
    assert (
        f"serving:       http://127.0.0.1:{port}/ (testproject.asgi.application, "
        "with static files)" in runner.output
    )

    status, kind, body = get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
    assert (status, kind) == (200, "text/css"), body[:200]
    status, kind, body = get(f"http://127.0.0.1:{port}/static/django_quickworker/notifications.js")
    assert status == 200 and "javascript" in kind, (kind, body[:200])
    assert b"QuickWorker" in body
    status, _, _ = get(f"http://127.0.0.1:{port}/static/django_quickworker/nope.js")
    assert status == 404


def test_serve_leaves_static_files_alone_when_debug_is_off(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    port = free_port()
    runner = start_runworkers("--serve", str(port), env=altered_settings(tmp_path, "DEBUG = False"))
    wait_for_port(port, lambda: runner.process.poll() is None, lambda: runner.output)
    assert f"http://127.0.0.1:{port}/ (testproject.asgi.application)\n" in runner.output

    status, _, _ = get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
    assert status == 404  # collectstatic and the web server's job in production


def test_without_channel_layers_serve_uses_the_in_memory_layer(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    ada = user("ada")
    port = free_port()
    env = altered_settings(tmp_path, "del CHANNEL_LAYERS")
    runner = start_runworkers("--serve", str(port), env={**env, "QUICKWORKER": FAST_POLL})
    wait_for_port(port, lambda: runner.process.poll() is None, lambda: runner.output)
    assert "channel layer: channels.layers.InMemoryChannelLayer\n" in runner.output

    with open_socket(port, ada) as socket:
        job = submit_job(tag="no-layers", type="demo.countdown", user=ada, data=COUNTDOWN)
        assert_a_countdown_story(messages_until(socket, "job.finished"), job)


def test_without_channel_layers_the_banner_says_messages_are_dropped(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    runner = start_runworkers("--burst", env=altered_settings(tmp_path, "del CHANNEL_LAYERS"))

    assert runner.wait() == 0, runner.output
    assert (
        "channel layer: none (CHANNEL_LAYERS is not set: live messages are dropped)\n"
        in runner.output
    )


def test_the_in_memory_layer_without_serve_reaches_no_browser(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    runner = start_runworkers("--burst", env=altered_settings(tmp_path, ""))

    assert runner.wait() == 0, runner.output
    assert (
        "channel layer: channels.layers.InMemoryChannelLayer (this process only: browsers "
        "connected elsewhere get no messages)\n" in runner.output
    )


def test_the_banner_says_when_no_installed_app_has_a_jobs_module(
    start_runworkers: StartRunworkers, tmp_path: Path
) -> None:
    lines = "INSTALLED_APPS = [app for app in INSTALLED_APPS if app != 'demo']"
    runner = start_runworkers("--burst", env=altered_settings(tmp_path, lines))

    assert runner.wait() == 0, runner.output
    assert (
        "job types:     removeOldWorkerJobs (no installed app has a jobs.py: put your @job "
        "functions in one)\n" in runner.output
    )
