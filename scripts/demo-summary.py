#!/usr/bin/env python3
"""The live summary line of `make demo` (scripts/demo.sh), from `marginstream run`:

    ready, messages consumed, customers held and exposed, rejected | the portfolio's 30-day
    GM-M, GM-O and drag (/metrics) | 30-day GM-M per ACV tier (/api/v1/portfolio) | the
    worst customer by 30-day GM-M (/api/v1/customers) | the swing customer's 7-day GM-M
    (/api/v1/customers/{id})

Usage: demo-summary.py LISTEN SWING_ID, e.g. demo-summary.py 127.0.0.1:9898 'acme "beta"'.
Prints one line; while run does not answer yet, says so. Exit 0 either way.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

WINDOW = "30d"


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=2) as response:
        return response.read().decode("utf-8")


def metrics(text):
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        values[key] = float(value)
    return values


def pct(value):
    """A ratio as a percentage; `n/a` for an absent one (revenue <= 0)."""
    if value is None or value != value:
        return "n/a"
    return f"{100 * float(value):.1f}%"


def main():
    listen, swing = sys.argv[1], sys.argv[2]
    base = f"http://{listen}"
    try:
        values = metrics(get(base, "/metrics"))
    except (OSError, urllib.error.URLError):
        print("waiting for /metrics (joining the group takes a few seconds)")
        return 0

    def value(key, default=float("nan")):
        return values.get(key, default)

    rejected = sum(v for k, v in values.items() if k.startswith("marginstream_rejected_events_total"))
    window = f'window="{WINDOW}"'
    line = (f"ready={int(value('marginstream_ready', 0))}"
            f" consumed={int(value('marginstream_consumed_messages_total', 0))}"
            f" ({value('marginstream_consumed_messages_per_second', 0):.0f}/s)"
            f" customers={int(value('marginstream_customers', 0))}"
            f" ({int(value('marginstream_customers_exposed', 0))} exposed)"
            f" rejected={int(rejected)}"
            f" | {WINDOW} GM-M {pct(value('marginstream_portfolio_gm_market_ratio{%s}' % window))}"
            f" GM-O {pct(value('marginstream_portfolio_gm_operating_ratio{%s}' % window))}"
            f" drag {pct(value('marginstream_portfolio_services_drag_ratio{%s}' % window))}")
    try:
        portfolio = json.loads(get(base, "/api/v1/portfolio"))
        tiers = " ".join(f"{s['segment']} {pct(s['windows'][WINDOW]['gm_market_ratio'])}"
                         for s in portfolio.get("segments") or [])
        line += f" | tiers {tiers or 'off'}"
        page = json.loads(get(base, f"/api/v1/customers?window={WINDOW}&sort=gm_market_ratio&order=asc&limit=1"))
        if page["customers"]:
            worst = page["customers"][0]
            line += f" | worst {worst['customer_id']} {pct(worst['windows'][WINDOW]['gm_market_ratio'])}"
        swinging = json.loads(get(base, "/api/v1/customers/" + urllib.parse.quote(swing, safe="")))
        line += f" | {swing} 7d {pct(swinging['windows']['7d']['gm_market_ratio'])}"
    except urllib.error.HTTPError as error:
        if error.code != 404:  # the swing customer before its first event arrives
            line += f" | API: {error}"
    except (OSError, KeyError, ValueError) as error:
        line += f" | API: {error}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
