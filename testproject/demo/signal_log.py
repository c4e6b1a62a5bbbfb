"""A receiver of every lifecycle signal that appends what it got to a file, one JSON line
each, so that tests can see the signals a real runworkers sends in its own processes.

Connected only when the environment names the file (DEMO_SIGNAL_LOG), which tests set.
"""

import json
import os
from typing import Any

from django.dispatch import Signal

from django_quickworker import signals
from django_quickworker.models import WorkerJob

LOG_VARIABLE = "DEMO_SIGNAL_LOG"
SIGNALS = ("job_submitted", "job_started", "job_finished", "job_retried")


def connect_if_asked() -> None:
    """Connect the logging receiver to every signal if DEMO_SIGNAL_LOG names a file."""
    if os.environ.get(LOG_VARIABLE):
        for name in SIGNALS:
            getattr(signals, name).connect(log_signal, dispatch_uid=f"demo.signal_log.{name}")


def log_signal(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Append the signal's name, the sending process and its kwargs (jobs as ids) to the log."""
    name = next(name for name in SIGNALS if getattr(signals, name) is signal)
    fields = {key: _plain(value) for key, value in kwargs.items()}
    line = json.dumps({"signal": name, "pid": os.getpid(), "sender": sender.__name__, **fields})
    with open(os.environ[LOG_VARIABLE], "a") as log:  # one short write: appends do not mix
        log.write(line + "\n")


def _plain(value: Any) -> Any:
    """A job as a dict of what the tests check; anything else as it is."""
    if isinstance(value, WorkerJob):
        return {"id": value.pk, "status": value.status, "attempt": value.attempt}
    return value
