#!/usr/bin/env bash
# The test suite on every supported Python, Django and database (tox.ini: the oldest and
# newest Django on each database, each Python once at least), plus lint, types, migrations,
# package and docs: tox, in parallel. Arguments go to tox, e.g. ./test.sh -e py312-dj60-sqlite
#
# It installs tox and tox-uv into the default interpreter, puts pyenv's Python 3.10-3.13 on
# PATH (tox looks for python3.10 ... python3.13 there) and forbids uv to download
# interpreters, so that a missing one fails its envs, with a line saying how to provide it.
# The tests need their database servers (PostgreSQL; MariaDB for the mariadb envs) and Redis
# on 127.0.0.1, and Debian's chromium and faketime:
# .ci/run starts or installs them, then runs this script.
set -euo pipefail
cd "$(dirname "$0")"

VERSIONS="3.10 3.11 3.12 3.13"

# tox runs on the default interpreter; resolve it before exposing the others.
PYTHON=$( (command -v pyenv >/dev/null && pyenv which python3) || command -v python3)
"$PYTHON" -m pip install --quiet --disable-pip-version-check 'tox>=4.20' 'tox-uv>=1.11'

# Each pyenv interpreter's own bin directory, not pyenv's shims: a shim answers only for the
# versions pyenv has selected, so tox would find python3.12 on PATH and fail to run it.
if command -v pyenv >/dev/null; then
  for version in $(pyenv versions --bare | grep -E '^3\.1[0-3]\.[0-9]+$' | sort -V); do
    PATH="$(pyenv prefix "$version")/bin:$PATH"
  done
  export PATH
fi
export UV_PYTHON_DOWNLOADS=never  # use those interpreters; never fetch one from the network

missing=()
for version in $VERSIONS; do
  "python$version" -c '' 2>/dev/null || missing+=("$version")
done
how_to_provide() {
  for version in "${missing[@]}"; do
    echo "python$version is not on PATH, so the py${version/./}-* envs fail. Install it" \
      "(pyenv install $version, or your system's python$version package), or run other" \
      "envs: ./test.sh -e py312-dj60-sqlite" >&2
  done
}
how_to_provide

status=0
"$PYTHON" -m tox run-parallel --parallel-no-spinner "$@" || status=$?
[ "$status" -eq 0 ] || how_to_provide  # again, below tox's report, where it is read
exit "$status"
