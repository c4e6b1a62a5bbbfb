#!/usr/bin/env bash
# The demo in one command: installs into .venv-demo, migrates a SQLite database, creates the
# demo user, then runs web pages, websockets and workers in one process tree (embedded mode).
# No other service is needed. Open http://127.0.0.1:8000/ and sign in as demo / demo.
set -euo pipefail
cd "$(dirname "$0")"
# The demo runs on SQLite and the in-memory channel layer, whatever this shell has set.
unset DATABASE_URL REDIS_URL
export QUICKWORKER='{"POLL_INTERVAL": 0.25}'

[ -x .venv-demo/bin/python ] || python3 -m venv .venv-demo
.venv-demo/bin/python -m pip install --quiet --disable-pip-version-check -e ".[embedded]"
.venv-demo/bin/python testproject/manage.py migrate --verbosity 0
.venv-demo/bin/python testproject/manage.py demo_user
echo "Open http://127.0.0.1:8000/ and sign in (Ctrl-C stops)."
exec .venv-demo/bin/python testproject/manage.py runworkers --workers 2 --serve 127.0.0.1:8000
