#!/usr/bin/env python3
"""Scrapes and queries at scale (issue 9), written to the "## Scrapes and queries" section of
target/bench/report.md (and target/bench/scrape.json).

For each of CUSTOMERS (default 100000 and 1000000): a ledger (about 2 events per customer and
day over 2 days) produced to a 4-partition topic of a local Tansu broker; then, for the default
exposure budget (10,000) and with the budget off (customers_max above the customers):

1. `marginstream run` (release build) reads it all (ready, every message counted, from the
   query API's counters: a 1M-customer /metrics without budget is gigabytes);
2. /metrics: series, bytes, and scrape time (median of ROUNDS);
3. the query API: a top-50 page and one customer (medians of 20);
4. under a steady stream of new events (STREAM_RATE per second, produced meanwhile), two
   windows of WINDOW seconds: one quiet, one with back-to-back scrapes and API queries. For
   each: the apply latency's p99 (from the histogram's buckets), the longest service pass of
   the loop (the histogram's highest non-empty bucket: an upper bound) and the longest
   publishing step.

With OLD_BIN set to a build from before issue 9 (rendering on the loop), its scrape time and
the quiet/scraping apply-latency quantiles at the first size are measured too, for the same
ledger and stream.

Environment: CUSTOMERS="100000 1000000", ROUNDS=5, WINDOW=10, STREAM_RATE=20000,
BIN=target/release/marginstream, OLD_BIN (unset), KAFKA_BROKERS (else Tansu).
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "target/bench"
WORK = OUT / "scrape"
BIN = os.environ.get("BIN", str(ROOT / "target/release/marginstream"))
OLD_BIN = os.environ.get("OLD_BIN")
SIZES = [int(n) for n in os.environ.get("CUSTOMERS", "100000 1000000").split()]
ROUNDS = int(os.environ.get("ROUNDS", "5"))
WINDOW = float(os.environ.get("WINDOW", "10"))
STREAM_RATE = int(os.environ.get("STREAM_RATE", "20000"))

sys.path.insert(0, str(ROOT / "tests/e2e"))
import prom  # noqa: E402


def get(port, path, timeout=600):
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        body = response.read()
    return body, time.perf_counter() - started


def scrape_counts(port, timeout=900):
    """Scrapes /metrics without holding it (gigabytes at 1M customers without the budget):
    returns (seconds, bytes, series, per-customer series). The seconds are those of the
    transfer alone: the counting (Python, far slower than the server) is timed and taken
    out."""
    started = time.perf_counter()
    counting = 0.0
    size = series = customer_series = 0
    rest = b""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            count_started = time.perf_counter()
            size += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line and not line.startswith(b"#"):
                    series += 1
                    if b"customer_id=" in line:
                        customer_series += 1
            counting += time.perf_counter() - count_started
    return time.perf_counter() - started - counting, size, series, customer_series


def self_metrics(port):
    """The loop's histograms and counters from /metrics, read as a stream: only the lines
    of the apply latency, the service passes, the publishing steps and the consumed count."""
    values = {}
    wanted = (b"marginstream_apply_latency_seconds", b"marginstream_loop_service",
              b"marginstream_publish_step", b"marginstream_consumed_messages_total")
    rest = b""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=900) as response:
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.startswith(wanted):
                    key, value = line.decode().rsplit(" ", 1)
                    values[key] = float(value)
    return values


def buckets(values, name):
    out = []
    for key, value in values.items():
        m = re.match(re.escape(name) + r'_bucket\{le="([^"]+)"\}', key)
        if m:
            out.append((float(m.group(1)), value))
    return sorted(out)


def delta_quantile(before, after, name, q):
    """The q-quantile of a histogram's observations between two reads, interpolated as
    histogram_quantile does; and the upper bound of the highest non-empty bucket."""
    b = dict(buckets(before, name))
    a = buckets(after, name)
    counts = [(le, count - b.get(le, 0.0)) for le, count in a]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None, None
    rank = q * total
    lower, below = 0.0, 0.0
    quantile = None
    for le, count in counts:
        if count >= rank:
            quantile = lower if le == float("inf") else lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
            break
        lower, below = le, count
    highest = None
    previous = 0.0
    for le, count in counts:
        if count > previous:
            highest = le
        previous = count
    return quantile, highest


def old_quantile(values, q):
    return values.get(f'marginstream_apply_latency_seconds{{quantile="{q}"}}')


def wait_ready(port, lines, process, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("run exited")
        try:
            body, _ = get(port, "/readyz", timeout=5)
            portfolio = json.loads(get(port, "/api/v1/portfolio", timeout=60)[0])
            counters = portfolio["counters"]
            counted = sum(sum(v.values()) for v in counters["events"].values()) + sum(counters["rejected"].values())
            if counted >= lines:
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(1)
    raise RuntimeError("run did not read the ledger in time")


def wait_ready_old(port, lines, process, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("old run exited")
        try:
            text, _ = get(port, "/metrics", timeout=120)
            text = text.decode()
            counted = sum(int(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                          if l.startswith(("marginstream_events_total{", "marginstream_rejected_events_total{")))
            if "\nmarginstream_ready 1\n" in text and counted >= lines:
                return
        except Exception:  # noqa: BLE001
            pass
        time.sleep(2)
    raise RuntimeError("old run did not read the ledger in time")


def hammer(port, stop, paths, counts):
    while not stop.is_set():
        for path in paths:
            try:
                get(port, path)
                counts[path] = counts.get(path, 0) + 1
            except Exception:  # noqa: BLE001
                counts["errors"] = counts.get("errors", 0) + 1


def windows(port, config, stream_ledger, scrape_paths, old=False):
    """A quiet window and a busy one under a steady stream; the loop's figures for each."""
    producer = subprocess.Popen([BIN, "produce", "--config", str(config), "--input", str(stream_ledger),
                                 "--rate", str(STREAM_RATE)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        time.sleep(3)
        for name, paths in (("quiet", []), ("scraping", scrape_paths)):
            before = self_metrics(port)
            stop = threading.Event()
            counts = {}
            threads = [threading.Thread(target=hammer, args=(port, stop, [p], counts)) for p in paths]
            for t in threads:
                t.start()
            time.sleep(WINDOW)
            stop.set()
            for t in threads:
                t.join()
            after = self_metrics(port)
            consumed = after.get("marginstream_consumed_messages_total", 0) - before.get("marginstream_consumed_messages_total", 0)
            entry = {"requests": counts, "consumed": consumed}
            if old:
                entry["apply_p99_since_start"] = old_quantile(after, "0.99")
                entry["apply_p999_since_start"] = old_quantile(after, "0.999")
            else:
                p99, highest = delta_quantile(before, after, "marginstream_apply_latency_seconds", 0.99)
                _, service_max = delta_quantile(before, after, "marginstream_loop_service_seconds", 0.99)
                _, publish_max = delta_quantile(before, after, "marginstream_publish_step_seconds", 0.99)
                _, service_cpu_max = delta_quantile(before, after, "marginstream_loop_service_cpu_seconds", 0.99)
                entry.update(apply_p99=p99, apply_max_bucket=highest, service_max_bucket=service_max,
                             service_cpu_max_bucket=service_cpu_max, publish_step_max_bucket=publish_max)
            results[name] = entry
    finally:
        producer.terminate()
        producer.wait()
    return results


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    if not Path(BIN).exists():
        subprocess.run(["cargo", "build", "--release", "-p", "marginstream"], check=True, cwd=ROOT)
    brokers, broker_port = prom.start_broker()
    report = {"sizes": []}
    try:
        for customers in SIZES:
            ledger = WORK / f"ledger-{customers}.jsonl"
            stream = WORK / f"stream-{customers}.jsonl"
            # Both up to now, and run on the wall clock: the stream's events fall inside the
            # windows without moving the watermark, as live events do (windows slide at
            # bucket boundaries only).
            subprocess.run([BIN, "generate", "--customers", str(customers), "--days", "2",
                            "--events-per-customer-day", "1", "--seed", "42", "--end", "now",
                            "--output", str(ledger)], check=True, capture_output=True)
            needed = STREAM_RATE * (10 + 2 * WINDOW)
            per_day = max(1, -(-int(needed) // customers))
            subprocess.run([BIN, "generate", "--customers", str(customers), "--days", "1",
                            "--events-per-customer-day", str(per_day), "--seed", "43", "--end", "now",
                            "--output", str(stream)], check=True, capture_output=True)
            lines = sum(1 for _ in open(ledger, "rb"))
            size = {"customers": customers, "lines": lines, "budgets": []}
            suffix = f"{customers}-{os.getpid()}-{int(time.time())}"
            topic = f"scrape-{suffix}"
            base = f"""[kafka]
brokers = "{brokers}"
topic = "{topic}"
dlq_topic = "{topic}.dlq"
group_id = "GROUP"
[kafka.properties]
"session.timeout.ms" = "6000"
[metrics]
listen = "127.0.0.1:PORT"
[ledger]
clock = "wall"
[state]
dir = "STATE"
checkpoint_interval = "24h"
"""
            produce_config = WORK / "produce.toml"
            produce_config.write_text(base.replace("PORT", "0").replace("GROUP", "produce").replace("STATE", str(WORK / "none")))
            subprocess.run([BIN, "create-topics", "--config", str(produce_config), "--partitions", "4"], check=True, capture_output=True)
            started = time.time()
            subprocess.run([BIN, "produce", "--config", str(produce_config), "--input", str(ledger)], check=True, capture_output=True)
            print(f"{customers} customers: {lines} events produced in {time.time() - started:.1f} s", flush=True)
            runs = [("default budget", 10_000, BIN), ("budget off", customers * 2, BIN)]
            if OLD_BIN and customers == SIZES[0]:
                runs.append(("before issue 9 (render on the loop)", None, OLD_BIN))
            for name, budget, binary in runs:
                port = prom.free_port()
                config = WORK / f"run-{customers}-{len(size['budgets'])}.toml"
                text = base.replace("PORT", str(port)).replace("GROUP", f"g-{suffix}-{len(size['budgets'])}")
                text = text.replace("STATE", str(WORK / f"state-{customers}-{len(size['budgets'])}"))
                if budget is not None:
                    text = text.replace("[ledger]", f"customers_max = {budget}\n[ledger]")
                config.write_text(text)
                shutil.rmtree(WORK / f"state-{customers}-{len(size['budgets'])}", ignore_errors=True)
                log = open(WORK / f"run-{customers}-{len(size['budgets'])}.log", "w")
                started = time.time()
                process = subprocess.Popen([binary, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
                try:
                    if budget is None:
                        wait_ready_old(port, lines, process)
                    else:
                        wait_ready(port, lines, process)
                    ready_seconds = time.time() - started
                    times = []
                    for _ in range(ROUNDS):
                        seconds, size_bytes, series, customer_series = scrape_counts(port)
                        times.append(seconds)
                    entry = {"name": name, "budget": budget, "ready_seconds": ready_seconds,
                             "series": series, "customer_series": customer_series,
                             "bytes": size_bytes, "scrape_seconds_median": statistics.median(times),
                             "scrape_seconds": times}
                    paths = ["/metrics"]
                    if budget is not None:
                        first = json.loads(get(port, "/api/v1/customers?limit=1&sort=customer_id&order=asc")[0])
                        one_path = "/api/v1/customers/" + urllib.parse.quote(first["customers"][0]["customer_id"], safe="")
                        top = [get(port, "/api/v1/customers?limit=50")[1] for _ in range(20)]
                        one = [get(port, one_path)[1] for _ in range(20)]
                        entry["api_top50_seconds_median"] = statistics.median(top)
                        entry["api_customer_seconds_median"] = statistics.median(one)
                        paths += ["/api/v1/customers?limit=50", one_path]
                    entry["windows"] = windows(port, config, stream, paths, old=budget is None)
                    size["budgets"].append(entry)
                    print(json.dumps(entry), flush=True)
                finally:
                    process.terminate()
                    try:
                        process.wait(timeout=120)
                    except subprocess.TimeoutExpired:
                        process.kill()
            report["sizes"].append(size)
    finally:
        prom.stop_broker(broker_port)
    (OUT / "scrape.json").write_text(json.dumps(report, indent=1))
    section = ["## Scrapes and queries", "",
               f"Generated {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} on {os.cpu_count()} cores; "
               f"medians of {ROUNDS} scrapes and 20 queries; windows of {WINDOW:.0f} s under a stream of "
               f"{STREAM_RATE} events/s. Pauses are upper bounds (the histogram bucket of the longest one): "
               "wall time (which includes the time other threads held the loop's core) and the loop thread's "
               "own CPU time.", "",
               "| customers | exposition | series | per-customer series | MB | scrape s | top-50 query ms | one customer ms | apply p99 µs quiet / scraping | longest loop pause ms quiet / scraping | its CPU time ms quiet / scraping | longest publish step ms |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        for b in size["budgets"]:
            w = b["windows"]
            def us(v):
                return "n/a" if v is None else f"{v * 1e6:.1f}"
            def ms(v):
                return "n/a" if v is None else f"{v * 1e3:.2f}"
            if b["budget"] is None:
                apply = f"{us(w['quiet'].get('apply_p99_since_start'))} / {us(w['scraping'].get('apply_p99_since_start'))} (summary since start)"
                pause = "n/a"
                cpu = "n/a"
                publish = "n/a"
            else:
                apply = f"{us(w['quiet']['apply_p99'])} / {us(w['scraping']['apply_p99'])}"
                pause = f"{ms(w['quiet']['service_max_bucket'])} / {ms(w['scraping']['service_max_bucket'])}"
                cpu = f"{ms(w['quiet'].get('service_cpu_max_bucket'))} / {ms(w['scraping'].get('service_cpu_max_bucket'))}"
                publish = f"{ms(w['scraping']['publish_step_max_bucket'])}"
            section.append(
                f"| {size['customers']:,} | {b['name']} | {b['series']:,} | {b['customer_series']:,} | "
                f"{b['bytes'] / 1e6:.1f} | {b['scrape_seconds_median']:.3f} | "
                f"{ms(b.get('api_top50_seconds_median'))} | {ms(b.get('api_customer_seconds_median'))} | "
                f"{apply} | {pause} | {cpu} | {publish} |")
    section_path = WORK / "section.md"
    section_path.write_text("\n".join(section) + "\n")
    subprocess.run([sys.executable, str(ROOT / "scripts/report-section.py"), str(OUT / "report.md"), str(section_path)], check=True)
    print("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
