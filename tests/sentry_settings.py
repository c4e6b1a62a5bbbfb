"""The test project's settings with Sentry initialised, for workers the Sentry tests start.

Events go to a transport that appends each one, as JSON, to the file named by
``SENTRY_EVENTS_FILE``: the real SDK does everything up to the network.
"""

import json
import os

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from testproject.settings import *  # noqa: F403


class FileTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            with open(os.environ["SENTRY_EVENTS_FILE"], "a") as events:
                events.write(json.dumps(event, default=str) + "\n")


sentry_sdk.init(dsn="https://key@sentry.invalid/1", transport=FileTransport)
