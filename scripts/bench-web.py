#!/usr/bin/env python3
"""What TLS and basic auth (metrics.web_config_file) add to a scrape: written to
target/bench/web.md and the "## HTTP listener: TLS and basic auth" section of
target/bench/report.md.

1. A local Tansu broker (or KAFKA_BROKERS), a topic, and a ledger of CUSTOMERS (10000)
   customers over one day, produced to it; a test CA and server certificate (openssl CLI);
   a bcrypt hash of cost 10 (as `htpasswd -nBC 10` writes).
2. For each mode (plain HTTP; basic auth; TLS; TLS with basic auth), `marginstream run`
   (release) consumes the topic until ready, then:
   - a scrape on a kept-alive connection (Prometheus keeps its connection): ROUNDS (200)
     GETs of /metrics, median and 90th percentile;
   - with basic auth, the first scrape of a user (bcrypt, not yet cached): 20 users with
     the same hash, each once;
   - with TLS, a scrape on a new connection each time (the handshake): ROUNDS / 4.
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


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def connection(port, tls, ctx):
    if tls:
        return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def scrape(conn, user=None):
    """One GET /metrics on `conn`; returns (seconds, bytes)."""
    headers = {}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    started = time.perf_counter()
    conn.request("GET", "/metrics", headers=headers)
    response = conn.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"/metrics answered {response.status}")
    return seconds, len(body)


def summary(samples):
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return statistics.median(ordered) * 1000, p90 * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/marginstream"))
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    customers = int(os.environ.get("CUSTOMERS", "10000"))
    rounds = int(os.environ.get("ROUNDS", "200"))
    out = ROOT / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="marginstream-bench-web-"))
    broker_port = None
    processes = []
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
        if os.environ.get("KAFKA_BROKERS"):
            brokers = os.environ["KAFKA_BROKERS"]
        else:
            broker_port = prom.free_port()
            subprocess.run([str(ROOT / "scripts/broker.sh"), "start", str(broker_port)], check=True,
                           capture_output=True)
            brokers = f"127.0.0.1:{broker_port}"
        topic = f"bench-web-{os.getpid()}"
        ledger = work / "ledger.jsonl"
        subprocess.run([binary, "generate", "--customers", str(customers), "--days", "1", "--seed", "5",
                        "--output", str(ledger)], check=True, capture_output=True)
        base = ["--brokers", brokers, "--topic", topic, "--dlq-topic", topic + ".dlq"]
        subprocess.run([binary, "create-topics", *base, "--partitions", "2"], check=True, capture_output=True)
        subprocess.run([binary, "produce", *base, "--input", str(ledger)], check=True, capture_output=True)
        ctx = ssl.create_default_context(cafile=str(work / "ca.crt"))

        for index, (name, web, is_tls, is_auth) in enumerate(modes):
            port = prom.free_port()
            config = work / f"mode{index}.toml"
            text = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
            if web:
                (work / f"web{index}.yml").write_text(web)
                text += f'web_config_file = "{work / f"web{index}.yml"}"\n'
            config.write_text(text)
            log = open(work / f"run{index}.log", "w")
            process = subprocess.Popen([binary, "run", "--config", str(config), *base,
                                        "--group-id", f"{topic}-{index}", "--state-dir", str(work / f"state{index}")],
                                       stdout=log, stderr=subprocess.STDOUT)
            processes.append(process)
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
                    raise RuntimeError(f"run ({name}) did not become ready: see {work}/run{index}.log")
                time.sleep(0.3)
            user = "user0" if is_auth else None
            first = []
            if is_auth:
                for i in range(USERS):
                    conn = connection(port, is_tls, ctx)
                    conn.request("GET", "/healthz")  # open the connection (and TLS) first
                    conn.getresponse().read()
                    seconds, _ = scrape(conn, f"user{i}")
                    first.append(seconds)
                    conn.close()
            conn = connection(port, is_tls, ctx)
            scrape(conn, user)
            kept, size = [], 0
            for _ in range(rounds):
                seconds, size = scrape(conn, user)
                kept.append(seconds)
            conn.close()
            fresh = []
            if is_tls:
                for _ in range(max(1, rounds // 4)):
                    conn = connection(port, is_tls, ctx)
                    seconds, _ = scrape(conn, user)
                    fresh.append(seconds)
                    conn.close()
            rows.append((name, size, summary(kept), summary(first) if first else None,
                         summary(fresh) if fresh else None))
            prom.stop(process)
            processes.remove(process)

        base_median = rows[0][2][0]
        lines = [
            "## HTTP listener: TLS and basic auth",
            "",
            f"`scripts/bench-web.py`: `marginstream run` (release) holding {customers} customers, "
            f"/metrics of {rows[0][1] / 1e6:.1f} MB, scraped {rounds} times on one kept-alive "
            "connection by Python's http.client (as Prometheus keeps its connection); TLS 1.3 "
            "with a P-256 certificate; bcrypt cost 10. Milliseconds, median / 90th percentile; "
            "\"added\" is the median minus plain HTTP's.",
            "",
            "| mode | scrape, kept-alive | added | first scrape of a user (bcrypt) | scrape on a new connection (handshake) |",
            "|---|---|---|---|---|",
        ]
        for name, _, kept, first, fresh in rows:
            first_text = f"{first[0]:.1f} / {first[1]:.1f}" if first else "-"
            fresh_text = f"{fresh[0]:.1f} / {fresh[1]:.1f}" if fresh else "-"
            lines.append(f"| {name} | {kept[0]:.2f} / {kept[1]:.2f} | {kept[0] - base_median:+.2f} | "
                         f"{first_text} | {fresh_text} |")
        section = out / "web.md"
        section.write_text("\n".join(lines) + "\n")
        subprocess.run([sys.executable, str(ROOT / "scripts/report-section.py"), str(out / "report.md"),
                        str(section)], check=True)
        print("\n".join(lines))
    finally:
        for process in processes:
            prom.stop(process)
        if broker_port is not None:
            subprocess.run([str(ROOT / "scripts/broker.sh"), "stop", str(broker_port)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
