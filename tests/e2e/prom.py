"""A real Prometheus for the end-to-end scripts (backfill.py, dashboard.py, live_alert.py,
live_budget.py, web_auth.py): a free port, the server started on a data directory and waited
for, stopped; and the live scripts' common teardown."""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(work, config_text, data, port):
    """Starts Prometheus with `config_text` (written to work/prometheus.yml; relative paths in
    it are relative to `work`) on `data`, listening on 127.0.0.1:`port`, with a retention
    long enough to keep backfilled blocks (the default 15d would delete them at once).
    Returns the process once /-/ready answers; raises if it exits or takes over 60 s."""
    config = work / "prometheus.yml"
    config.write_text(config_text)
    log_path = work / "prometheus.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
         "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
            return process
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                stop(process)
                raise RuntimeError(f"prometheus did not become ready: see {log_path}")
            time.sleep(0.3)


def stop(process, timeout=30):
    """Terminates a process and waits for it, killing it after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_broker():
    """The Kafka broker of the live scripts: KAFKA_BROKERS when set, else a local Tansu
    started on a free port (scripts/broker.sh). Returns (bootstrap servers, the local
    broker's port or None), the port for `stop_broker`."""
    if os.environ.get("KAFKA_BROKERS"):
        return os.environ["KAFKA_BROKERS"], None
    port = free_port()
    subprocess.run([str(ROOT / "scripts/broker.sh"), "start", str(port)], check=True, capture_output=True)
    return f"127.0.0.1:{port}", port


def stop_broker(port):
    """Stops the local broker `start_broker` started on `port` (None: nothing to stop)."""
    if port is not None:
        subprocess.run([str(ROOT / "scripts/broker.sh"), "stop", str(port)], capture_output=True)


def teardown(processes, broker_port, work, failed):
    """The live scripts' end: stops `processes` (last started first) and the local broker on
    `broker_port` (None: a broker of KAFKA_BROKERS, left alone); removes `work` when nothing
    `failed`, keeps it for inspection otherwise."""
    for process in reversed(processes):
        stop(process)
    stop_broker(broker_port)
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection")
