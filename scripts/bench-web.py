#!/usr/bin/env python3
"""What TLS and basic auth (metrics.web_config_file) add to a scrape: written to
target/bench/web.md and the "## HTTP listener: TLS and basic auth" section of
target/bench/report.md.

1. A local Tansu broker (or KAFKA_BROKERS); for each count in CUSTOMERS (10,10000) a topic
   and a ledger of that many customers over one day, produced to it; a test CA and server certificate (openssl CLI);
   a bcrypt hash of cost 10 (as `htpasswd -nBC 10` writes).
2. For each mode (plain HTTP; basic auth; TLS; TLS with basic auth), `marginstream run`
   (release) consumes the topic until ready, then, on a kept-alive connection (Prometheus
   keeps its connection), ROUNDS (200) times: a GET of a path no route serves (a 404 once
   past TLS and auth, not waiting for the consumer loop: the layers' own cost) and a GET
   of /metrics; with basic auth, the first request of each of 20 users with the same hash
   (bcrypt, not yet cached); with TLS, ROUNDS / 4 requests on a new connection each (the
   handshake). Median and 90th percentile.
The client is Python's http.client, the same in every mode: differences between modes are
what the mode adds.

Usage: scripts/bench-web.py [--binary target/release/marginstream]
Environment: CUSTOMERS, ROUNDS, KAFKA_BROKERS.
"""

import argparse
import base64
import http.client
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import prom  # noqa: E402  (free_port, stop)

PASSWORD = "scrape-secret"
# bcrypt, cost 10, of PASSWORD (tests/e2e/web_auth.py has the same).
PASSWORD_HASH = "$2b$10$DJufiLIZqHziy6uhkpDkWuwNmJbJW/b2RMflXtDjcFmYXRA0lGcc6"
USERS = 20

# The `run` processes alive, stopped on the way out.
PROCESSES = []


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def connection(port, tls, ctx):
    if tls:
        return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


# A path no route serves: the answer (404) comes straight after the TLS and auth layers,
# without waiting for the consumer loop, which answers /metrics between its polls (up to
# 50 ms when idle). What it costs is what the layers cost.
THROUGH = "/api/v1/bench"


def scrape(conn, user=None, path="/metrics"):
    """One GET of `path` on `conn`; returns (seconds, bytes)."""
    headers = {}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    if response.status != (200 if path == "/metrics" else 404):
        raise RuntimeError(f"{path} answered {response.status}")
    return seconds, len(body)


def summary(samples):
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return statistics.median(ordered) * 1000, p90 * 1000


def measure(binary, work, brokers, customers, rounds, modes, ctx):
    """Runs every mode on a topic of `customers` customers; returns one row per mode."""
    results = []
    topic = f"bench-web-{os.getpid()}-{customers}"
    ledger = work / f"ledger-{customers}.jsonl"
    subprocess.run([binary, "generate", "--customers", str(customers), "--days", "1", "--seed", "5",
                    "--output", str(ledger)], check=True, capture_output=True)
    base = ["--brokers", brokers, "--topic", topic, "--dlq-topic", topic + ".dlq"]
    subprocess.run([binary, "create-topics", *base, "--partitions", "2"], check=True, capture_output=True)
    subprocess.run([binary, "produce", *base, "--input", str(ledger)], check=True, capture_output=True)

    for index, (name, web, is_tls, is_auth) in enumerate(modes):
        port = prom.free_port()
        config = work / f"mode{index}.toml"
        text = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        if web:
            (work / f"web{index}.yml").write_text(web)
            text += f'web_config_file = "{work / f"web{index}.yml"}"\n'
        config.write_text(text)
        log = open(work / f"run{customers}-{index}.log", "w")
        process = subprocess.Popen([binary, "run", "--config", str(config), *base,
                                    "--group-id", f"{topic}-{index}", "--state-dir", str(work / f"state{customers}-{index}")],
                                   stdout=log, stderr=subprocess.STDOUT)
        PROCESSES.append(process)
        deadline = time.time() + 120
        while True:
            try:
                conn = connection(port, is_tls, ctx)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"run ({name}) did not become ready: see {work}/run{customers}-{index}.log")
            time.sleep(0.3)
        user = "user0" if is_auth else None
        first = []
        if is_auth:
            for i in range(USERS):
                conn = connection(port, is_tls, ctx)
                conn.request("GET", "/healthz")  # open the connection (and TLS) first
                conn.getresponse().read()
                seconds, _ = scrape(conn, f"user{i}", THROUGH)
                first.append(seconds)
                conn.close()
        conn = connection(port, is_tls, ctx)
        scrape(conn, user)
        through, kept, size = [], [], 0
        for _ in range(rounds):
            through.append(scrape(conn, user, THROUGH)[0])
            seconds, size = scrape(conn, user)
            kept.append(seconds)
        conn.close()
        fresh = []
        if is_tls:
            for _ in range(max(1, rounds // 4)):
                conn = connection(port, is_tls, ctx)
                fresh.append(scrape(conn, user, THROUGH)[0])
                conn.close()
        results.append((name, size, summary(through), summary(kept), summary(first) if first else None,
                        summary(fresh) if fresh else None))
        prom.stop(process)
        PROCESSES.remove(process)

    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/marginstream"))
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    counts = [int(c) for c in os.environ.get("CUSTOMERS", "10,10000").split(",")]
    rounds = int(os.environ.get("ROUNDS", "200"))
    out = ROOT / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="marginstream-bench-web-"))
    broker_port = None
    rows = []
    try:
        ext = work / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA", cwd=work)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=server", cwd=work)
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.crt", "-days", "2", "-extfile", str(ext), cwd=work)
        users = "".join(f'  user{i}: "{PASSWORD_HASH}"\n' for i in range(USERS))
        tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        modes = [
            ("plain HTTP", None, False, False),
            ("basic auth", f"basic_auth_users:\n{users}", False, True),
            ("TLS", tls, True, False),
            ("TLS + basic auth", f"{tls}basic_auth_users:\n{users}", True, True),
        ]
        brokers, broker_port = prom.start_broker()
        ctx = ssl.create_default_context(cafile=str(work / "ca.crt"))
        for customers in counts:
            rows.append((customers, measure(binary, work, brokers, customers, rounds, modes, ctx)))

        lines = [
            "## HTTP listener: TLS and basic auth",
            "",
            "`scripts/bench-web.py`: what `metrics.web_config_file` adds to a request. `marginstream "
            f"run` (release) on a topic of N customers, {rounds} requests on one kept-alive "
            "connection by Python's http.client (Prometheus keeps its connection too); TLS 1.3 "
            "with a P-256 certificate; bcrypt cost 10; milliseconds, median / 90th percentile. "
            "\"Through the layers\" is a GET of a path no route serves (404 once past TLS and "
            "auth), which the consumer loop does not answer: its time is what the layers cost. "
            "/metrics also waits for the loop, which answers between polls (up to 50 ms when "
            "idle), and its rendering; \"added\" is its median minus plain HTTP's at the same N. "
            "The first request of a user pays bcrypt; then the password is cached.",
            "",
            "| customers (/metrics size) | mode | through the layers | /metrics | /metrics added | first request of a user (bcrypt) | new connection each time (TLS handshake) |",
            "|---|---|---|---|---|---|---|",
        ]
        for customers, results in rows:
            base_median = results[0][3][0]
            for name, size, through, kept, first, fresh in results:
                first_text = f"{first[0]:.1f} / {first[1]:.1f}" if first else "-"
                fresh_text = f"{fresh[0]:.2f} / {fresh[1]:.2f}" if fresh else "-"
                lines.append(f"| {customers} ({size / 1e6:.2f} MB) | {name} | {through[0]:.3f} / {through[1]:.3f} | "
                             f"{kept[0]:.2f} / {kept[1]:.2f} | {kept[0] - base_median:+.2f} | {first_text} | {fresh_text} |")
        section = out / "web.md"
        section.write_text("\n".join(lines) + "\n")
        subprocess.run([sys.executable, str(ROOT / "scripts/report-section.py"), str(out / "report.md"),
                        str(section)], check=True)
        print("\n".join(lines))
    finally:
        for process in PROCESSES:
            prom.stop(process)
        prom.stop_broker(broker_port)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
