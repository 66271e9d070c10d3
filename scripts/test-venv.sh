#!/usr/bin/env bash
# The Python virtualenv of the end-to-end test scripts (tests/e2e/*.py): the packages of
# tests/e2e/requirements.txt, pinned and hash-checked by pip (--require-hashes, wheels
# only, no dependencies pulled in), in a cached virtualenv. Prints its interpreter's path.
#
#   scripts/test-venv.sh         install if needed (or if the requirements changed), print
#                                the path of the virtualenv's python
#
# Environment: MARGINSTREAM_CACHE (default: <repo>/.cache) holds the virtualenv
# (test-venv); PYTHON (default: python3) is the interpreter that makes it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MARGINSTREAM_CACHE:-$REPO/.cache}
[[ $CACHE == /* ]] || CACHE=$PWD/$CACHE
VENV=$CACHE/test-venv
REQUIREMENTS=$REPO/tests/e2e/requirements.txt
STAMP=$VENV/.requirements.sha256
PYTHON=${PYTHON:-python3}

die() {
    echo "test-venv.sh: $*" >&2
    exit 1
}

[[ -f $REQUIREMENTS ]] || die "missing $REQUIREMENTS"
WANTED=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)

installed() {
    [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$WANTED" ]]
}

if ! installed; then
    mkdir -p "$CACHE"
    # Two test runs may install at once: the second waits and finds the work done.
    exec {lock}>"$CACHE/.test-venv.lock"
    flock "$lock"
    if ! installed; then
        echo "test-venv.sh: installing tests/e2e/requirements.txt into $VENV" >&2
        tmp=$VENV.tmp.$$
        # Left by an install that failed; none runs now, as this one holds the lock.
        rm -rf "$VENV".tmp.*
        pip_args=(install --quiet --disable-pip-version-check --no-input
            --require-hashes --only-binary :all: --no-deps -r "$REQUIREMENTS")
        # pip >= 22.3 installs into a virtualenv without pip of its own, seconds faster.
        if "$PYTHON" -m pip install --help 2>/dev/null | grep -q -- '--python '; then
            "$PYTHON" -m venv --without-pip "$tmp"
            "$PYTHON" -m pip --python "$tmp/bin/python" "${pip_args[@]}"
        else
            "$PYTHON" -m venv "$tmp"
            "$tmp/bin/python" -m pip "${pip_args[@]}"
        fi
        "$tmp/bin/python" -c 'import prometheus_client.openmetrics.parser, prometheus_client.parser' ||
            die "prometheus_client does not import in $tmp"
        echo "$WANTED" >"$tmp/.requirements.sha256"
        rm -rf "$VENV"
        # Moved into place whole, so that a half-made virtualenv is never used. Its python
        # finds its packages through the pyvenv.cfg beside it, wherever it is.
        mv -T "$tmp" "$VENV"
    fi
    flock -u "$lock"
fi
echo "$VENV/bin/python"
