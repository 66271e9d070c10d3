#!/usr/bin/env python3
"""`make demo` end to end, briefly: scripts/demo.sh as a newcomer runs it, on ports and in a
directory of its own, with a smaller ledger and an early swing so that it fits in about a
minute (the debug binary of `make test`).

While the demo runs:
1. it prints the URLs (/metrics, the query API, Prometheus and its graph and alert links);
2. its summary line comes with the ACV tiers, the worst customer and the swing customer;
3. Prometheus scrapes `run` (up == 1) and has the tier recording rule
   `marginstream:segment_gm_market:ratio` for every window;
4. the swing alert, MarginstreamCustomerGmMarketDrop, fires for acme "beta" (the backfilled
   week-ago baseline against the live swing), with a drop of more than 10 points;
5. /metrics sums the customers beyond the budget into customer_id="__other__";
6. every query of the dashboard's "ACV tiers" row returns a series per tier, in every window,
   from the live data (tests/e2e/dashboard.py runs them over backfilled history).
Then the demo stops by itself (DEMO_SECONDS), exit status 0, every process it started gone.

Usage: demo_smoke.py --binary target/debug/marginstream. Last line `demo-smoke: N passed,
M failed`; exit 1 on failure, or when prometheus/promtool cannot be installed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard as dash  # noqa: E402  (the dashboard test's helpers: Report, api)
import prom  # noqa: E402  (the shared Prometheus helpers)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/marginstream.json"
SWING = 'acme "beta"'
# Long enough for the startup (about 10 s with the debug binary), the swing 10 s into the
# live part and a few evaluations after it.
DEMO_SECONDS = 45
TIMEOUT_S = 150


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    report = dash.Report()
    work = Path(tempfile.mkdtemp(prefix="marginstream-demo-smoke-"))
    listen = f"127.0.0.1:{prom.free_port()}"
    env = dict(os.environ, BIN=str(Path(args.binary).resolve()), DEMO_WORK_DIR=str(work),
               DEMO_SECONDS=str(DEMO_SECONDS), DEMO_SWING_AFTER="10s", DEMO_CUSTOMERS="80",
               DEMO_EVENTS_PER_CUSTOMER_DAY="20", DEMO_KAFKA_PORT=str(prom.free_port()),
               DEMO_LISTEN=listen, DEMO_PROMETHEUS_PORT=str(prom.free_port()))
    started = time.time()
    demo = subprocess.Popen([str(ROOT / "scripts/demo.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        # 1. The URLs, once Prometheus is up.
        port = None
        while port is None and demo.poll() is None and time.time() - started < TIMEOUT_S:
            match = re.search(r"Prometheus +http://127\.0\.0\.1:(\d+)", "".join(lines))
            port = match and int(match.group(1))
            time.sleep(0.5)
        text = "".join(lines)
        if not report.check(port is not None, "the demo prints Prometheus's URL"):
            raise RuntimeError("the demo did not start")
        for what, pattern in (("/metrics", rf"http://{listen}/metrics"),
                              ("the worst customers", rf"http://{listen}/api/v1/customers\?window=30d&sort=gm_market_ratio"),
                              ("the portfolio", rf"http://{listen}/api/v1/portfolio"),
                              ("the GM-M by tier graph", re.escape(urllib.parse.quote("marginstream:segment_gm_market:ratio", safe=""))),
                              ("the alerts page", rf"http://127\.0\.0\.1:{port}/(classic/)?alerts")):
            report.check(re.search(pattern, text), f"the demo prints {what}")

        # 3, 4. Prometheus scrapes run, evaluates the rules, and the swing alert fires.
        firing, windows, up = [], set(), False
        while demo.poll() is None and not (firing and windows >= {"24h", "7d", "30d", "all"} and up):
            body = dash.api(port, "query", query='up{job="marginstream"} == 1')
            up = up or bool(body.get("data", {}).get("result"))
            body = dash.api(port, "query", query="count by (window) (marginstream:segment_gm_market:ratio)")
            windows |= {r["metric"]["window"] for r in body.get("data", {}).get("result", [])}
            body = dash.api(port, "query", query='ALERTS{alertname="MarginstreamCustomerGmMarketDrop",'
                            'alertstate="firing"}')
            firing = [r["metric"]["customer_id"] for r in body.get("data", {}).get("result", [])
                      if r["metric"].get("customer_id") == SWING]
            time.sleep(1)
        report.check(up, "Prometheus scrapes run (up == 1)")
        report.check(windows >= {"24h", "7d", "30d", "all"},
                     f"marginstream:segment_gm_market:ratio has every window, got {sorted(windows)}")
        report.check(firing == [SWING], f"MarginstreamCustomerGmMarketDrop fires for {SWING}")
        if firing:
            body = dash.api(port, "query", query='marginstream:customer_gm_market_ratio_7d:change7d'
                            '{customer_id="acme \\"beta\\""}')
            values = [float(r["value"][1]) for r in body["data"]["result"]]
            report.check(values and values[0] < -0.10, f"the swing is over 10 points down, got {values}")
        print(f"swing alert after {time.time() - started:.0f}s of the demo")

        # 5. The budget: customers beyond metrics.customers_max are summed into __other__.
        metrics = subprocess.run(["curl", "-fsS", f"http://{listen}/metrics"], capture_output=True,
                                 text=True).stdout
        report.check('customer_id="__other__"' in metrics, "/metrics has the __other__ row")

        # 6. The dashboard's tier panels, live.
        checked = 0
        for panel in dash.all_panels(json.loads(DASHBOARD.read_text())):
            for target in panel.get("targets") or []:
                if "marginstream_segment_" not in target.get("expr", ""):
                    continue
                for window in ("24h", "7d", "30d", "all"):
                    text, _ = dash.interpolate(target["expr"], {"window": window})
                    result = dash.api(port, "query", query=text).get("data", {}).get("result", [])
                    tiers = {r["metric"].get("segment") for r in result}
                    checked += 1
                    report.check(len(tiers) >= 3 and None not in tiers,
                                 f"panel {panel.get('title')!r} ({window}): a series per tier, got {tiers}")
        report.check(checked >= 20, f"the dashboard has tier panels ({checked} queries)")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        report.check(False, f"ERROR {error}")
    finally:
        try:
            demo.wait(timeout=max(1, TIMEOUT_S - (time.time() - started)))
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, 15)
            demo.wait()
        reader.join(timeout=5)
    text = "".join(lines)
    summaries = [line for line in lines if line.startswith("ready=1")]
    # 2. The summary line, with the tiers, the worst customer and the swing customer.
    report.check(any(re.search(r"\| tiers self_serve \S+ smb \S+ mid_market \S+ enterprise \S+ \| worst \S+ "
                               r"-?[\d.]+% \| acme \"beta\" 7d -?[\d.]+%", line) for line in summaries),
                 f"a summary line with the tiers, the worst customer and the swing: {summaries[-1:]}")
    report.check(demo.returncode == 0 and "demo: stopped" in text,
                 f"the demo stops by itself, exit status 0 (got {demo.returncode})")
    # Run and Prometheus name the directory, produce and Tansu the broker's port.
    leftovers = [pid for pattern in (str(work), f"127.0.0.1:{env['DEMO_KAFKA_PORT']}")
                 for pid in subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                                           text=True).stdout.split()]
    report.check(not leftovers, f"no process of the demo is left: {leftovers}")
    print(f"demo ran {time.time() - started:.0f}s")
    if report.failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("".join(lines[-40:]))
        print(f"kept {work} for inspection")
    print(f"demo-smoke: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
