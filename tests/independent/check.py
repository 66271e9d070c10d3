#!/usr/bin/env python3
"""Independent reference implementation of the marginstream ledger contract, and a checker.

Usage: python3 tests/independent/check.py --binary target/debug/marginstream

Everything computed here is derived from /work/shared/spec/ledger-contract.md (v1) and the
project's decisions in docs/ledger-format.md (order of checks, blank lines) and
docs/metrics.md ("Exactness and rounding"), with Python's exact `decimal` and `fractions`;
nothing is taken from the Rust engine. For each case the
script writes (or generates with `marginstream generate`) a JSONL ledger, replays it with
`marginstream replay --format json`, recomputes the same state independently and compares
every counter, customer, window, amount and ratio, and the rejected-lines file. See
README.md beside this file for the coverage and for how ambiguous rules were read.

Standard library only. The last line of output is always
`independent-check: N passed, M failed`; the exit code is 0 only when M is 0.
"""

import argparse
import base64
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
    setcontext,
)

# Exact arithmetic: any rounding in a sum or a product raises instead of passing silently.
setcontext(Context(prec=400, rounding=ROUND_HALF_EVEN,
                   traps=[InvalidOperation, DivisionByZero, Overflow, Inexact]))

# ----------------------------------------------------------------------------------------
# Contract constants (sections 1-5)
# ----------------------------------------------------------------------------------------

EVENT_TYPES = ("Revenue_Event", "Cost_Event")
MARGIN_FUNCTIONS = ("Infrastructure", "Support", "Success_Engineering", "Implementation",
                    "Onboarding")
ALL_FUNCTIONS = MARGIN_FUNCTIONS + ("Excluded",)
SERVICE_FUNCTIONS = ("Support", "Success_Engineering", "Implementation", "Onboarding")
REVENUE_TYPES = ("recurring", "usage", "services", "one_time")
REASONS = ("malformed_json", "missing_field", "invalid_field", "unknown_event_type",
           "unknown_cost_function", "untagged_cost", "unsupported_currency", "oversized",
           "future_event", "customer_limit")
OUTCOMES = ("applied", "duplicate", "late")

# Section 3: the default tagging rules, in order.
DEFAULT_RULES = [
    ("Infrastructure", ["hosting", "cloud", "infrastructure", "third_party_api",
                        "payment_processing", "delivery_software", "cloud_credit"]),
    ("Support", ["support", "customer_support"]),
    ("Success_Engineering", ["customer_success", "success_engineering"]),
    ("Implementation", ["implementation", "professional_services"]),
    ("Onboarding", ["onboarding", "training"]),
    ("Excluded", ["r_and_d", "sales_and_marketing", "g_and_a", "stock_based_compensation"]),
]

NS = 1_000_000_000
ZERO = Decimal(0)

# ----------------------------------------------------------------------------------------
# Parsing helpers
# ----------------------------------------------------------------------------------------

_DURATION = re.compile(r"^([0-9]+)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text):
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"unsupported duration {text!r} in the checker's own configs")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# RFC 3339 section 5.6 date-time; 'T' and 'Z' may be lower case (section 5.6 NOTE).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339(text):
    """Returns integer nanoseconds since the epoch, or None when not an RFC 3339 date-time."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, offset = match.group(7), match.group(8)
    if not 1 <= month <= 12:
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days_in_month = 29 if (month == 2 and leap) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days_in_month or hour > 23 or minute > 59 or second > 59:
        return None  # leap seconds (60) are not accepted: see README
    if fraction and len(fraction) - 1 > 9:
        return None  # finer than a nanosecond: see README
    nanos = int((fraction[1:] + "000000000")[:9]) if fraction else 0
    if offset in ("Z", "z"):
        offset_seconds = 0
    else:
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return None
        offset_seconds = (oh * 3600 + om * 60) * (-1 if offset[0] == "-" else 1)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds - offset_seconds) * NS + nanos


def format_ns(ns):
    if ns is None:
        return "null"
    seconds, nanos = divmod(ns, NS)
    days, rest = divmod(seconds, 86400)
    # civil_from_days
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    y += m <= 2
    text = f"{y:04d}-{m:02d}-{d:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


_DECIMAL_STRING = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_OUTPUT_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")


def amount_shape(number):
    """(significant digits, decimal places) of a finite Decimal, as the docs count them:
    leading zeros and trailing zeros after the point are not significant ("1234.5600" is
    1234.56, two places); the digits before the point all count (1E+28 has 29 digits)."""
    sign, digits, exponent = number.as_tuple()
    digits = list(digits)
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    while len(digits) > 1 and digits[0] == 0:
        digits.pop(0)
    if digits == [0]:
        return 1, 0
    if exponent >= 0:
        return len(digits) + exponent, 0
    places = -exponent
    return max(len(digits), 1), places


MAX_DIGITS = 28  # docs/metrics.md, "The exactness limits": 28 significant digits, 28 places


def parse_amount(value):
    """Returns the exact Decimal of an `amount` field, or None when it is not of its form.

    A JSON number arrives here as a Decimal built from its literal text (parse_float and
    parse_int), so 0.1 is exactly one tenth; a string must be a plain decimal. At most 28
    significant digits and at most 28 decimal places, trailing zeros after the point not
    counted (docs/ledger-format.md, docs/metrics.md)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if not _DECIMAL_STRING.match(value):
            return None
        number = Decimal(value)
    else:
        return None
    if not number.is_finite():
        return None
    significant, places = amount_shape(number)
    if significant > MAX_DIGITS or places > MAX_DIGITS:
        return None
    return number


def integer_digits(value):
    """Digits before the decimal point of |value|; 0 when |value| < 1."""
    whole = int(abs(value))
    return len(str(whole)) if whole else 0


def utf8_len(text):
    return len(text.encode("utf-8"))


def has_control(text):
    # Unicode general category Cc: C0 controls, DEL and the C1 controls.
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def load_json_object(raw):
    """Returns the dict of a line, or None when the bytes are not one JSON object in UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        obj = json.loads(text, parse_float=Decimal, parse_int=Decimal,
                         parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


# ----------------------------------------------------------------------------------------
# Configuration (the subset of keys the cases use) and its TOML rendering
# ----------------------------------------------------------------------------------------

class Config:
    def __init__(self, windows=("24h", "7d", "30d"), bucket="1h", lifetime=True,
                 reporting_currency="USD", fx=None, max_event_bytes=65536,
                 max_customers=1_000_000, max_future_skew="5m", rules=None):
        self.windows = list(windows)
        self.bucket = bucket
        self.lifetime = lifetime
        self.reporting_currency = reporting_currency
        self.fx = dict(fx or {})
        self.max_event_bytes = max_event_bytes
        self.max_customers = max_customers
        self.max_future_skew = max_future_skew
        self.rules = rules  # None: the defaults of section 3
        self.is_default = False

    @staticmethod
    def default():
        config = Config()
        config.is_default = True
        return config

    # derived
    def labels(self):
        return self.windows + (["all"] if self.lifetime else [])

    def finite(self):
        return [(label, duration_seconds(label)) for label in self.windows]

    def bucket_seconds(self):
        return duration_seconds(self.bucket)

    def rate(self, currency):
        if currency == self.reporting_currency:
            return Decimal(1)
        if currency in self.fx:
            return Decimal(self.fx[currency])
        return None

    def tagging_rules(self):
        return DEFAULT_RULES if self.rules is None else self.rules

    def toml(self):
        q = json.dumps  # a JSON string literal is a valid TOML basic string here
        lines = ["[ledger]",
                 "windows = [" + ", ".join(q(w) for w in self.windows) + "]",
                 f"bucket = {q(self.bucket)}",
                 f"lifetime = {'true' if self.lifetime else 'false'}",
                 f"reporting_currency = {q(self.reporting_currency)}",
                 f"max_event_bytes = {self.max_event_bytes}",
                 f"max_customers = {self.max_customers}",
                 f"max_future_skew = {q(self.max_future_skew)}",
                 "", "[ledger.fx]"]
        lines += [f"{code} = {q(rate)}" for code, rate in sorted(self.fx.items())]
        if self.rules is not None:
            for function, categories in self.rules:
                lines += ["", "[[tagging.rules]]", f"function = {q(function)}",
                          "categories = [" + ", ".join(q(c) for c in categories) + "]"]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------
# The reference model
# ----------------------------------------------------------------------------------------

def new_figures():
    return {"revenue": ZERO, "cost": {f: ZERO for f in MARGIN_FUNCTIONS}}


RATIO_PLACES = 18


def round_half_even(fraction, places):
    """The Fraction rounded half-even to `places` decimal places, as an exact Decimal."""
    scaled = round(fraction * 10 ** places)  # round() of a Fraction is half-even, exact
    return Decimal(scaled).scaleb(-places)


def ratios(figures):
    """GM-M, GM-O and Services Drag as docs/metrics.md ("Exactness and rounding") prescribes,
    or None while revenue <= 0 (section 5). Each quotient is exact (a Fraction) and rounded
    once, half-even, to 18 places; when GM-M or the drag has k >= 10 integer digits, both
    keep 28 - k places (the larger k decides); GM-O = GM-M - drag exactly. Returns
    (rounded ratios, places, exact GM-M, exact drag)."""
    revenue = figures["revenue"]
    if revenue <= 0:
        return None
    cost = figures["cost"]
    infra = cost["Infrastructure"]
    services = sum((cost[f] for f in SERVICE_FUNCTIONS), ZERO)
    rev = Fraction(revenue)
    market = (rev - Fraction(infra)) / rev
    drag = Fraction(services) / rev
    digits = max(integer_digits(market), integer_digits(drag))
    places = RATIO_PLACES if digits < 10 else MAX_DIGITS - digits
    market_r = round_half_even(market, places)
    drag_r = round_half_even(drag, places)
    rounded = {
        "gm_market_ratio": market_r,
        "gm_operating_ratio": market_r - drag_r,
        "services_drag_ratio": drag_r,
    }
    return rounded, places, market, drag


class Budget:
    """The exactness budget of one series (a customer, or the portfolio), docs/metrics.md:
    the sum of |amount| of every amount it has received and the most decimal places of any
    of them (trailing zeros not counted); integer digits of the first plus the second must
    stay within 28."""

    def __init__(self):
        self.magnitude = ZERO
        self.places = 0

    def after(self, amount):
        return self.magnitude + abs(amount), max(self.places, amount_shape(amount)[1])

    def fits(self, amount):
        magnitude, places = self.after(amount)
        return integer_digits(magnitude) + places <= MAX_DIGITS

    def add(self, amount):
        self.magnitude, self.places = self.after(amount)


class Model:
    """Replays the lines of one ledger in file order, as the contract describes."""

    def __init__(self, config, now_ns):
        self.config = config
        self.now_ns = now_ns
        self.skew_ns = duration_seconds(config.max_future_skew) * NS
        self.bucket = config.bucket_seconds()
        self.finite = config.finite()
        self.longest = max((w for _, w in self.finite), default=None)
        self.rules = [(f, [c.lower() for c in cats]) for f, cats in config.tagging_rules()]
        self.events = {t: {o: 0 for o in OUTCOMES} for t in EVENT_TYPES}
        self.rejected = {r: 0 for r in REASONS}
        self.rejected_lines = []  # (line_number, reason, raw bytes)
        self.seen = {}  # event_id -> occurred_at ns of the applied event
        self.customers = set()
        self.applied = []  # (customer or None, event_type, function or None, amount, ns)
        self.watermark = None
        self.grey_duplicates = []  # repeats older than the guaranteed dedup horizon
        self.portfolio_budget = Budget()
        self.budgets = {}  # customer -> Budget

    def floor(self, ns):
        seconds = ns // NS
        return seconds - seconds % self.bucket

    def reject(self, number, reason, raw):
        self.rejected[reason] += 1
        self.rejected_lines.append((number, reason, raw))

    def validate(self, raw):
        """Returns (reason, None) or (None, prepared event): the stateless checks, in the
        fixed precedence documented in README.md."""
        if len(raw) > self.config.max_event_bytes:
            return "oversized", None
        obj = load_json_object(raw)
        if obj is None:
            return "malformed_json", None
        event_type = obj.get("event_type")
        if event_type is None:
            return "missing_field", None
        if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
            return "unknown_event_type", None
        revenue = event_type == "Revenue_Event"
        required = ["event_id", "occurred_at", "amount", "currency"]
        if revenue:
            required.append("customer_id")
        if any(obj.get(field) is None for field in required):
            return "missing_field", None
        event_id = obj["event_id"]
        if not isinstance(event_id, str) or not 1 <= utf8_len(event_id) <= 128:
            return "invalid_field", None
        customer = obj.get("customer_id")
        if customer is not None and (not isinstance(customer, str)
                                     or not 1 <= utf8_len(customer) <= 128
                                     or has_control(customer)):
            return "invalid_field", None
        occurred = parse_rfc3339(obj["occurred_at"])
        if occurred is None:
            return "invalid_field", None
        amount = parse_amount(obj["amount"])
        if amount is None:
            return "invalid_field", None
        currency = obj["currency"]
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            return "invalid_field", None
        function = explicit = category = None
        if revenue:
            revenue_type = obj.get("revenue_type")
            if revenue_type is not None and revenue_type not in REVENUE_TYPES:
                return "invalid_field", None
        else:
            explicit = obj.get("cost_function")
            category = obj.get("category")
            if category is not None and not isinstance(category, str):
                return "invalid_field", None  # ledger-format.md: a non-string category
            if explicit is not None:
                if not isinstance(explicit, str) or explicit not in ALL_FUNCTIONS:
                    return "unknown_cost_function", None
                function = explicit
        rate = self.config.rate(currency)
        if rate is None:
            return "unsupported_currency", None
        # metrics.md "The exactness limits": amount x rate must be exact in 28 significant
        # digits (and 28 places); checked right after the rate lookup, before tagging.
        converted = amount * rate
        significant, places = amount_shape(converted)
        if significant > MAX_DIGITS or places > MAX_DIGITS:
            return "invalid_field", None
        if not revenue and function is None:
            if category is not None:
                key = category.lower()
                function = next((f for f, cats in self.rules if key in cats), None)
            if function is None:
                return "untagged_cost", None
        if occurred > self.now_ns + self.skew_ns:
            return "future_event", None
        return None, (event_type, event_id, customer, function, converted, occurred)

    def feed(self, number, raw):
        reason, event = self.validate(raw)
        if reason:
            self.reject(number, reason, raw)
            return
        event_type, event_id, customer, function, amount, occurred = event
        if event_id in self.seen:
            original = self.seen[event_id]
            if (self.longest is not None and self.watermark is not None and
                    self.floor(original) <= self.floor(self.watermark) - self.longest - self.bucket):
                self.grey_duplicates.append((number, event_id))
            self.events[event_type]["duplicate"] += 1
            return
        if (customer is not None and customer not in self.customers
                and len(self.customers) >= self.config.max_customers):
            self.reject(number, "customer_limit", raw)
            return
        late = (self.longest is not None and self.watermark is not None and
                self.floor(occurred) <= self.floor(self.watermark) - self.longest)
        # The exactness budgets (metrics.md), in arrival order: an event that counts in a
        # margin line and reaches at least one window (a late one reaches `all` only, so
        # nothing with lifetime = false) must fit the portfolio's budget and its customer's.
        budgets = []
        if function != "Excluded" and not (late and not self.config.lifetime):
            budgets.append(self.portfolio_budget)
            if customer is not None:
                budgets.append(self.budgets.setdefault(customer, Budget()))
        if not all(budget.fits(amount) for budget in budgets):
            self.reject(number, "invalid_field", raw)
            return
        for budget in budgets:
            budget.add(amount)
        self.seen[event_id] = occurred
        self.events[event_type]["late" if late else "applied"] += 1
        if self.watermark is None or occurred > self.watermark:
            self.watermark = occurred
        if customer is not None:
            self.customers.add(customer)
        self.applied.append((customer, event_type, function, amount, occurred))

    def result(self):
        labels = self.config.labels()
        customers = {c: {label: new_figures() for label in labels} for c in self.customers}
        portfolio = {label: new_figures() for label in labels}
        unattributed = {label: {f: ZERO for f in MARGIN_FUNCTIONS} for label in labels}
        top = self.floor(self.watermark) if self.watermark is not None else None
        for customer, event_type, function, amount, occurred in self.applied:
            if function == "Excluded":
                continue  # below the gross-margin line: in no gauge
            fe = self.floor(occurred)
            member = [label for label, w in self.finite if top - w < fe <= top]
            if self.config.lifetime:
                member.append("all")
            for label in member:
                targets = [portfolio[label]]
                if customer is not None:
                    targets.append(customers[customer][label])
                for figures in targets:
                    if event_type == "Revenue_Event":
                        figures["revenue"] += amount
                    else:
                        figures["cost"][function] += amount
                if customer is None and event_type == "Cost_Event":
                    unattributed[label][function] += amount
        return {
            "watermark": self.watermark,
            "windows": labels,
            "events": self.events,
            "rejected": self.rejected,
            "rejected_lines": self.rejected_lines,
            "customers": customers,
            "portfolio": portfolio,
            "unattributed": unattributed,
            "grey_duplicates": self.grey_duplicates,
        }


def split_lines(data):
    """JSONL lines, 1-based; a final newline ends the last line rather than adding one."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def reference(ledger_bytes, config, now_ns):
    model = Model(config, now_ns)
    for number, raw in enumerate(split_lines(ledger_bytes), start=1):
        model.feed(number, raw)
    return model.result()


# ----------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------

class Diff:
    def __init__(self, case):
        self.case = case
        self.items = []

    def add(self, where, field, expected, got):
        self.items.append((where, field, expected, got))

    def __bool__(self):
        return bool(self.items)

    def print(self, limit=40):
        for where, field, expected, got in self.items[:limit]:
            print(f"  MISMATCH case={self.case} {where} field={field}: expected {expected}, got {got}")
        if len(self.items) > limit:
            print(f"  ... and {len(self.items) - limit} more mismatches")


def got_decimal(diff, where, field, text):
    if not isinstance(text, str) or not _OUTPUT_DECIMAL.match(text) or text == "-0":
        diff.add(where, field + " (format)", "a normalized decimal string", repr(text))
        try:
            return Decimal(str(text))
        except (InvalidOperation, ValueError):
            return None
    return Decimal(text)


def show(value, places=None):
    """A Decimal as plain text, optionally rounded to `places` decimals (display only)."""
    if isinstance(value, Decimal):
        with localcontext(Context(prec=120, rounding=ROUND_HALF_EVEN)):
            if places is not None:
                value = value.quantize(Decimal(1).scaleb(-places))
            text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    return repr(value)


def compare_figures(diff, where, expected, got):
    """Compares one window's figures; returns the binary's decoded figures."""
    if not isinstance(got, dict):
        diff.add(where, "figures", "an object", repr(got))
        return None
    decoded = {"revenue": got_decimal(diff, where, "revenue", got.get("revenue")), "cost": {}}
    if decoded["revenue"] is not None and decoded["revenue"] != expected["revenue"]:
        diff.add(where, "revenue", show(expected["revenue"]), got.get("revenue"))
    cost = got.get("cost") or {}
    for function in MARGIN_FUNCTIONS:
        value = got_decimal(diff, where, f"cost.{function}", cost.get(function))
        decoded["cost"][function] = value
        if value is not None and value != expected["cost"][function]:
            diff.add(where, f"cost.{function}", show(expected["cost"][function]),
                     cost.get(function))
    extra = set(cost) - set(MARGIN_FUNCTIONS)
    if extra:
        diff.add(where, "cost", "only the five margin functions", sorted(extra))
    computed = ratios(expected)
    got_ratios = {}
    for name in ("gm_market_ratio", "gm_operating_ratio", "services_drag_ratio"):
        text = got.get(name)
        if computed is None:
            if text is not None:
                diff.add(where, name, "null (revenue <= 0)", repr(text))
            continue
        rounded, places, market, drag = computed
        if text is None:
            diff.add(where, name, show(rounded[name]), "null")
            continue
        value = got_decimal(diff, where, name, text)
        if value is None:
            continue
        got_ratios[name] = value
        if value != rounded[name]:
            with localcontext(Context(prec=80)):
                error = abs(value - rounded[name])
            diff.add(where, name, f"{show(rounded[name])} (half-even to {places} places)",
                     f"{text} (off by {error:.3E})")
    if len(got_ratios) == 3:
        with localcontext(Context(prec=80)):
            bridge = got_ratios["gm_market_ratio"] - got_ratios["gm_operating_ratio"]
        if bridge != got_ratios["services_drag_ratio"]:
            diff.add(where, "GM-M - GM-O == services_drag (on the binary's output)",
                     show(bridge), show(got_ratios["services_drag_ratio"]))
    return decoded


def is_zero(figures):
    return figures["revenue"] == 0 and all(v == 0 for v in figures["cost"].values())


def compare(case, config, expected, got, rejected_records, ledger_lines):
    diff = Diff(case.name)
    labels = expected["windows"]

    # watermark
    if expected["watermark"] is None:
        if got.get("watermark") is not None or got.get("watermark_seconds") is not None:
            diff.add("watermark", "watermark", "null", got.get("watermark"))
    else:
        got_ns = parse_rfc3339(got.get("watermark"))
        if got_ns != expected["watermark"]:
            diff.add("watermark", "watermark", format_ns(expected["watermark"]),
                     got.get("watermark"))
        if got.get("watermark_seconds") != expected["watermark"] // NS:
            diff.add("watermark", "watermark_seconds", expected["watermark"] // NS,
                     got.get("watermark_seconds"))

    if got.get("windows") != labels:
        diff.add("windows", "labels", labels, got.get("windows"))

    # counters
    counters = got.get("counters") or {}
    events = counters.get("events") or {}
    for event_type in EVENT_TYPES:
        got_type = events.get(event_type) or {}
        for outcome in OUTCOMES:
            if got_type.get(outcome) != expected["events"][event_type][outcome]:
                diff.add(f"counters.events.{event_type}", outcome,
                         expected["events"][event_type][outcome], got_type.get(outcome))
    got_rejected = counters.get("rejected") or {}
    for reason in sorted(set(REASONS) | set(got_rejected)):
        if reason not in REASONS:
            diff.add("counters.rejected", reason, "not a contract reason", got_rejected[reason])
        elif got_rejected.get(reason) != expected["rejected"][reason]:
            diff.add("counters.rejected", reason, expected["rejected"][reason],
                     got_rejected.get(reason))

    # customers
    got_customers = {}
    for entry in got.get("customers") or []:
        cid = entry.get("customer_id")
        if cid in got_customers:
            diff.add(f"customer={cid!r}", "customers", "listed once", "listed twice")
        got_customers[cid] = entry.get("windows") or {}
    expected_customers = expected["customers"]
    if got.get("customers_held") != len(got_customers):
        diff.add("customers_held", "customers_held", f"{len(got_customers)} (the list's length)",
                 got.get("customers_held"))
    missing = sorted(set(expected_customers) - set(got_customers))
    extra = sorted(set(got_customers) - set(expected_customers))
    for cid in missing:
        if config.lifetime or not all(is_zero(f) for f in expected_customers[cid].values()):
            diff.add(f"customer={cid!r}", "presence", "held", "absent")
    for cid in extra:
        if config.lifetime:
            diff.add(f"customer={cid!r}", "presence", "not held", "held")
    if config.lifetime and got.get("customers_held") != len(expected_customers):
        diff.add("customers_held", "customers_held", len(expected_customers),
                 got.get("customers_held"))

    decoded_customers = {}
    for cid in sorted(set(got_customers), key=str):
        windows = got_customers[cid]
        if set(windows) != set(labels):
            diff.add(f"customer={cid!r}", "windows", labels, sorted(windows))
        reference_figures = expected_customers.get(cid) or {l: new_figures() for l in labels}
        decoded_customers[cid] = {}
        for label in labels:
            if label in windows:
                decoded_customers[cid][label] = compare_figures(
                    diff, f"customer={cid!r} window={label}", reference_figures[label],
                    windows[label])

    # portfolio
    portfolio = got.get("portfolio") or {}
    if set(portfolio) != set(labels):
        diff.add("portfolio", "windows", labels, sorted(portfolio))
    for label in labels:
        if label not in portfolio:
            continue
        decoded = compare_figures(diff, f"portfolio window={label}",
                                  expected["portfolio"][label], portfolio[label])
        # The binary's portfolio against the sum of the binary's own customers plus the
        # unattributed costs (which only the reference knows).
        if decoded is None:
            continue
        total = new_figures()
        for cid, per in decoded_customers.items():
            figures = per.get(label)
            if not figures:
                continue
            if figures["revenue"] is not None:
                total["revenue"] += figures["revenue"]
            for f in MARGIN_FUNCTIONS:
                if figures["cost"].get(f) is not None:
                    total["cost"][f] += figures["cost"][f]
        for f in MARGIN_FUNCTIONS:
            total["cost"][f] += expected["unattributed"][label][f]
        if decoded["revenue"] is not None and decoded["revenue"] != total["revenue"]:
            diff.add(f"portfolio window={label}", "revenue == sum of customers (binary)",
                     show(total["revenue"]), show(decoded["revenue"]))
        for f in MARGIN_FUNCTIONS:
            value = decoded["cost"].get(f)
            if value is not None and value != total["cost"][f]:
                diff.add(f"portfolio window={label}",
                         f"cost.{f} == customers + unattributed (binary)",
                         show(total["cost"][f]), show(value))

    # the reference's own portfolio identity (a self-check of this script)
    for label in labels:
        total = sum((c[label]["revenue"] for c in expected_customers.values()), ZERO)
        if total != expected["portfolio"][label]["revenue"]:
            diff.add(f"reference portfolio window={label}", "self-check revenue",
                     show(total), show(expected["portfolio"][label]["revenue"]))

    # the rejected-events file
    expected_lines = expected["rejected_lines"]
    if len(rejected_records) != len(expected_lines):
        diff.add("rejected-out", "line count", len(expected_lines), len(rejected_records))
    by_number = {}
    for index, record in enumerate(rejected_records):
        if not isinstance(record, dict):
            diff.add(f"rejected-out record {index + 1}", "record", "a JSON object", repr(record))
            continue
        by_number.setdefault(record.get("line_number"), []).append(record)
    for number, reason, raw in expected_lines:
        records = by_number.pop(number, [])
        if len(records) != 1:
            diff.add(f"rejected-out line_number={number}", "records", 1, len(records))
            continue
        record = records[0]
        if record.get("reason") != reason:
            diff.add(f"rejected-out line_number={number}", "reason", reason, record.get("reason"))
        if "line" in record:
            original = record["line"].encode("utf-8") if isinstance(record["line"], str) else None
        elif "line_base64" in record:
            original = base64.b64decode(record["line_base64"])
        else:
            original = None
        if original != raw:
            shown = raw if len(raw) <= 120 else raw[:120] + b"..."
            got_shown = original if original is None or len(original) <= 120 else original[:120] + b"..."
            diff.add(f"rejected-out line_number={number}", "original line", shown, got_shown)
    for number, records in sorted(by_number.items(), key=lambda kv: str(kv[0])):
        for record in records:
            diff.add(f"rejected-out line_number={number}", "records", "none (not rejected)",
                     record.get("reason"))
    return diff


# ----------------------------------------------------------------------------------------
# Running the binary
# ----------------------------------------------------------------------------------------

def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSTREAM_")}
    env["RUST_LOG"] = "warn"
    env.pop("RUST_BACKTRACE", None)
    return env


def run_binary(binary, args, timeout=120):
    return subprocess.run([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=clean_env(), timeout=timeout)


class Case:
    def __init__(self, name, description, config, ledger=None, generate=None, build=None):
        self.name = name
        self.description = description
        self.config = config
        self.ledger = ledger        # bytes, or None when generated
        self.generate = generate    # generator arguments, or None
        self.build = build          # build(binary, workdir) -> (bytes, error), or None


def run_case(binary, case, workdir):
    base = os.path.join(workdir, case.name)
    ledger_path = base + ".jsonl"
    if case.generate is not None:
        out = run_binary(binary, ["generate"] + case.generate + ["--output", ledger_path])
        if out.returncode != 0:
            return None, f"generate failed ({out.returncode}): {out.stderr.decode(errors='replace')}"
    elif case.build is not None:
        data, error = case.build(binary, base)
        if error:
            return None, error
        with open(ledger_path, "wb") as handle:
            handle.write(data)
    else:
        with open(ledger_path, "wb") as handle:
            handle.write(case.ledger)
    with open(ledger_path, "rb") as handle:
        ledger = handle.read()
    args = ["replay"]
    if not case.config.is_default:
        config_path = base + ".toml"
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(case.config.toml())
        args += ["--config", config_path]
    rejected_path = base + ".rejected.jsonl"
    args += ["--input", ledger_path, "--format", "json", "--rejected-out", rejected_path,
             "--progress", "never"]
    now_ns = time.time_ns()
    out = run_binary(binary, args)
    if out.returncode != 0:
        return None, (f"replay exited {out.returncode}: "
                      f"{out.stderr.decode(errors='replace').strip()[-2000:]}")
    try:
        got = json.loads(out.stdout.decode("utf-8"))
    except ValueError as error:
        return None, f"replay output is not JSON: {error}: {out.stdout[:300]!r}"
    records = []
    with open(rejected_path, "rb") as handle:
        for line in split_lines(handle.read()):
            try:
                records.append(json.loads(line.decode("utf-8")))
            except ValueError:
                records.append(line)
    expected = reference(ledger, case.config, now_ns)
    diff = compare(case, case.config, expected, got, records, split_lines(ledger))
    return (expected, diff), None


# ----------------------------------------------------------------------------------------
# The hand-written ledgers
# ----------------------------------------------------------------------------------------

class Num(str):
    """A JSON number written verbatim (never through a float)."""


def line(fields):
    parts = []
    for key, value in fields.items():
        text = value if isinstance(value, Num) else json.dumps(value, ensure_ascii=False)
        parts.append(json.dumps(key) + ": " + text)
    return "{" + ", ".join(parts) + "}"


def ledger_of(items):
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            out.append(line(item).encode("utf-8"))
    return b"\n".join(out) + b"\n"


# A fixed base well in the past: 2026-03-10T12:30:00Z (bucket start 12:00).
BASE = parse_rfc3339("2026-03-10T12:30:00Z")
H = 3600 * NS
D = 24 * H


def at(offset_ns=0):
    return format_ns(BASE + offset_ns)


def rev(event_id, customer, amount, when=None, currency="USD", **extra):
    event = {"event_type": "Revenue_Event", "event_id": event_id, "customer_id": customer,
             "occurred_at": when or at(), "amount": amount, "currency": currency}
    event.update(extra)
    return event


def cost(event_id, customer, amount, when=None, currency="USD", **extra):
    event = {"event_type": "Cost_Event", "event_id": event_id}
    if customer is not None:
        event["customer_id"] = customer
    event.update({"occurred_at": when or at(), "amount": amount, "currency": currency})
    event.update(extra)
    return event


def without(event, *keys):
    return {k: v for k, v in event.items() if k not in keys}


def padded_to(event, size):
    """The event as a line of exactly `size` bytes, padded with an unknown field."""
    event = dict(event, pad="")
    length = len(line(event).encode("utf-8"))
    event["pad"] = "x" * (size - length)
    text = line(event).encode("utf-8")
    assert len(text) == size, (len(text), size)
    return text


def hand_cases(now_ns):
    cases = []
    default = Config.default

    # -- every rejection reason (customer_limit has its own case), one defect per line ----
    long_id = "e" * 128
    items = [
        rev("ok-1", "c1", "100"),
        '{"event_type": "Revenue_Event", "event_id": "trunc", ',
        "[1, 2, 3]",
        '"just a string"',
        b'{"event_type": "Revenue_Event", "event_id": "\xff\xfe", "customer_id": "c1"}',
        '{"event_type": "Revenue_Event", "event_id": "nan", "customer_id": "c1", '
        '"occurred_at": "2026-03-10T12:00:00Z", "amount": NaN, "currency": "USD"}',
        "{}",
        without(rev("mf-1", "c1", "1"), "event_type"),
        dict(rev("mf-2", "c1", "1"), event_type=None),
        without(rev("mf-3", "c1", "1"), "customer_id"),
        rev("mf-4", None, "1"),
        without(cost("mf-5", "c1", "1", cost_function="Support"), "amount"),
        without(rev("mf-6", "c1", "1"), "currency"),
        without(rev("mf-7", "c1", "1"), "occurred_at"),
        without(rev("mf-8", "c1", "1"), "event_id"),
        dict(rev("mf-9", "c1", "1"), amount=None),
        rev("if-1", "c1", "1", when="2026-03-10 12:00"),
        rev("if-2", "c1", "1", when="2026-03-10T12:00:00"),
        rev("if-3", "c1", "1", when="2026-02-30T00:00:00Z"),
        rev("if-4", "c1", "1", when="2026-03-10"),
        dict(rev("if-5", "c1", "1"), occurred_at=1773145800),
        rev("if-6", "c1", "abc"),
        rev("if-7", "c1", ""),
        rev("if-8", "c1", "1.2.3"),
        rev("if-9", "c1", Num("true")),
        rev("if-10", "c1", "12345678901234567890123456789"),
        rev("if-11", "c1", Num("12345678901234567890123456789")),
        rev("if-12", "c1", "1", currency="usd"),
        rev("if-13", "c1", "1", currency="US"),
        rev("", "c1", "1"),
        rev("f" * 129, "c1", "1"),
        dict(rev("x", "c1", "1"), event_id=Num("42")),
        rev("if-14", "", "1"),
        rev("if-15", "c\u0001x", "1"),
        rev("if-16", "c" * 129, "1"),
        rev("if-17", "\u00e9" * 65, "1"),
        rev("if-18", "c1", "1", revenue_type="subscription"),
        cost("if-19", Num("7"), "1", cost_function="Support"),
        rev("if-20", "c1", Num('{"units": 1}')),
        rev("if-21", "c1", "1", currency=Num("840")),
        dict(rev("ue-1", "c1", "1"), event_type="Refund_Event"),
        dict(rev("ue-2", "c1", "1"), event_type="revenue_event"),
        dict(rev("ue-3", "c1", "1"), event_type=Num("1")),
        cost("uf-1", "c1", "1", cost_function="Marketing"),
        cost("uf-2", "c1", "1", cost_function="Marketing", category="hosting"),
        cost("ut-1", "c1", "1"),
        cost("ut-2", "c1", "1", category="catering"),
        cost("ut-3", "c1", "1", category=None),
        rev("uc-1", "c1", "1", currency="JPY"),
        cost("uc-2", None, "1", currency="EUR", category="hosting"),
        rev("fe-1", "c1", "1", when="2099-03-10T12:00:00Z"),
        padded_to(rev("ov-1", "c1", "1"), 65537),
        # valid ones at the limits
        rev(long_id, "d" * 128, "2"),
        rev("ok-utf8", "\u00e9" * 64, "3"),
        rev("ok-unicode", "client-\u5ba2\u6237", "4"),
        padded_to(rev("ok-65536", "c1", "5"), 65536),
        cost("ok-cost", "c1", "10", cost_function="Infrastructure", unknown={"nested": [1]}),
    ]
    cases.append(Case("h_rejections", "every rejection reason but customer_limit, one defect "
                      "per line, and valid lines at the size limits", default(), ledger_of(items)))

    # The documented order where one line has two defects (docs/ledger-format.md).
    items = [
        rev("ok-1", "c1", "100"),
        cost("ro-1", "c1", "1", category=Num("5")),                       # invalid_field
        cost("ro-2", "c1", "1", cost_function="Marketing", category=Num("5")),  # invalid_field
        cost("ro-3", "c1", "1", currency="JPY", category="catering"),     # unsupported_currency
        cost("ro-4", "c1", "1", currency="JPY", cost_function="Marketing"),  # unknown function
    ]
    cases.append(Case("h_rejection_order", "two defects on a line: a non-string category is "
                      "invalid_field, unsupported_currency comes before untagged_cost",
                      default(), ledger_of(items)))

    # -- customer_limit ---------------------------------------------------------------
    items = [
        rev("a1", "c1", "10"),
        rev("a2", "c2", "20"),
        rev("a3", "c3", "30"),                                   # customer_limit
        cost("a4", "c3", "1", cost_function="Support"),          # customer_limit
        cost("a5", None, "2", cost_function="Support"),          # unattributed: fine
        rev("a6", "c1", "5"),                                    # existing: fine
        rev("a3", "c2", "7"),   # the rejected a3 registered no id: applied
        rev("a3", "c1", "70"),  # now a duplicate
    ]
    cases.append(Case("h_customer_limit", "max_customers = 2: new customers beyond are "
                      "rejected, existing ones and unattributed costs are not",
                      Config(max_customers=2), ledger_of(items)))

    # -- refunds: revenue to zero and below, ratios absent ----------------------------
    items = [
        rev("r1", "zero", "100"),
        rev("r2", "zero", "-100", revenue_type="one_time"),
        cost("k1", "zero", "10", cost_function="Infrastructure"),
        rev("r3", "negative", "50"),
        rev("r4", "negative", "-80.25"),
        cost("k2", "negative", "10", category="hosting"),
        cost("k3", "negative", "5", category="support"),
        rev("r5", "mix", "200", revenue_type="recurring"),
        rev("r6", "mix", "30", revenue_type="usage"),
        rev("r7", "mix", "20", revenue_type="services"),
        rev("r8", "mix", "-50", revenue_type="one_time"),
        cost("k4", "mix", "20", cost_function="Infrastructure"),
        cost("k5", "mix", "10", cost_function="Support"),
        cost("k6", "mix", "7", cost_function="Success_Engineering"),
        cost("k7", "mix", "3", cost_function="Implementation"),
        cost("k8", "mix", "1", cost_function="Onboarding"),
        cost("k9", "cost-only", "42", cost_function="Support"),
        rev("r9", "thin", "0.01"),
        cost("k10", "thin", "3", cost_function="Infrastructure"),
    ]
    cases.append(Case("h_refunds", "refunds taking revenue to zero and below (ratios null), a "
                      "customer with costs only, every revenue_type", default(), ledger_of(items)))

    # -- unattributed and excluded costs ----------------------------------------------
    items = [
        rev("r1", "c1", "1000"),
        rev("r2", "c2", "500"),
        cost("u1", None, "100", cost_function="Infrastructure"),
        dict(cost("u2", None, "40", category="support"), customer_id=None),
        cost("u3", None, "25", category="customer_success"),
        cost("u4", None, "12.5", category="professional_services"),
        cost("u5", None, "7", category="training"),
        cost("u6", None, "-30", category="cloud_credit"),
        cost("x1", "c1", "999", cost_function="Excluded"),
        cost("x2", "c1", "111", category="r_and_d"),
        cost("x3", None, "222", category="sales_and_marketing"),
        cost("x4", "c2", "333", category="g_and_a"),
        cost("x5", None, "444", category="stock_based_compensation"),
        cost("c1i", "c1", "150", category="hosting"),
        cost("c1s", "c1", "50", category="support"),
        cost("c2c", "c2", "-20", category="cloud_credit"),
    ]
    cases.append(Case("h_unattributed_excluded", "unattributed costs count in the portfolio "
                      "only, Excluded costs in nothing, cloud credits negative",
                      default(), ledger_of(items)))

    # -- late events and window boundaries --------------------------------------------
    top = BASE - BASE % H  # floor(T) once the watermark is BASE
    items = [
        rev("e1", "c1", "1", when=at(-40 * D)),        # first: not late, but in `all` only
        rev("e2", "c1", "1000"),                       # the watermark: BASE
        rev("e3", "c1", "2", when=at(-35 * D)),        # late
        rev("e4", "c2", "4", when=at(-20 * D)),        # in 30d only
        cost("e5", "c1", "8", when=at(-3 * D), cost_function="Support"),  # 7d, 30d
        rev("e6", "c3", "16", when=at(-31 * D)),       # late: new customer via a late event
        rev("e7", "c1", "32", when=at(-23 * H)),       # 24h
        rev("e8", "c1", "64", when=format_ns(top - 24 * H + 3599 * NS)),  # floor = floor(T)-24h
        rev("e9", "c1", "128", when=format_ns(top - 23 * H)),             # first bucket of 24h
        rev("e10", "c2", "256", when=format_ns(top - 30 * D)),            # late (boundary)
        rev("e11", "c2", "512", when=format_ns(top - 30 * D + H)),        # oldest bucket of 30d
        cost("e12", None, "3", when=at(-50 * D), cost_function="Infrastructure"),  # late
        rev("e13", "c2", "1024", when=format_ns(top - 7 * D)),            # 30d, not 7d
        rev("e14", "c2", "2048", when=format_ns(top - 7 * D + H)),        # 7d
        cost("e15", "c1", "5", when=format_ns(top), cost_function="Infrastructure"),
        rev("e16", "c4", "9", when=at(-45 * D)),       # late
    ]
    cases.append(Case("h_late", "late events older than every window (all only), late ones "
                      "still inside 30d, bucket boundaries of each window",
                      default(), ledger_of(items)))

    # -- the watermark moves later: windows follow it ------------------------------------
    items = [
        rev("m1", "c1", "1", when=at(-2 * D)),
        rev("m2", "c1", "2", when=at(-1 * D)),
        rev("m3", "c1", "4", when=at(-12 * H)),
        rev("m4", "c1", "8", when=at(-1 * H)),
        rev("m5", "c2", "16", when=at(-8 * D)),
        rev("m6", "c1", "32", when=at(0)),
        rev("m7", "c2", "64", when=at(-29 * D)),
        rev("m8", "c1", "128", when=at(10 * D)),       # the watermark jumps 10 days later
        rev("m9", "c2", "256", when=at(-25 * D)),      # late after the jump
    ]
    cases.append(Case("h_watermark_moves", "windows are computed at the final watermark, not "
                      "at arrival", default(), ledger_of(items)))

    # -- duplicates ---------------------------------------------------------------------
    items = [
        rev("r1", "c1", "100"),
        rev("r1", "c1", "999"),                        # different amount: duplicate
        rev("r1", "c2", "5"),                          # other customer: duplicate, c2 not held
        cost("k1", "c1", "10", cost_function="Infrastructure"),
        cost("k1", "c1", "50", cost_function="Support"),
        cost("k1", None, "70", cost_function="Support"),
        rev("r2", "c1", "7", currency="JPY"),          # rejected: registers no id
        rev("r2", "c1", "7"),                          # applied
        rev("r2", "c1", "8"),                          # duplicate
        rev("r3", "c1", "1", revenue_type="bogus"),    # rejected
        rev("r3", "c1", "3", when=at(-1 * H)),         # applied
        rev("r4", "c1", "11", when=at(-2 * D)),
        rev("r4", "c1", "11", when=at(-2 * D)),        # exact repeat
    ]
    cases.append(Case("h_duplicates", "duplicates with different amounts and customers; a "
                      "rejected line does not register its event_id", default(), ledger_of(items)))

    # -- amounts --------------------------------------------------------------------------
    items = [
        rev("n1", "c1", Num("0.1")),
        rev("n2", "c1", Num("0.2")),
        rev("n3", "c1", Num("10")),
        rev("n4", "c1", Num("-0.5")),
        rev("n5", "c1", Num("3.1415926535")),
        rev("n6", "c1", "1234.5600"),
        rev("n7", "c1", "0.0001"),
        rev("n8", "c1", "-0.0001"),
        rev("n9", "c1", "0"),
        rev("n10", "c1", Num("0")),
        rev("n11", "c1", "00012.50"),
        cost("n12", "c1", Num("0.1"), cost_function="Infrastructure"),
        cost("n13", "c1", Num("0.7"), cost_function="Infrastructure"),
        cost("n14", "c1", "0.3333333333", cost_function="Support"),
        rev("n15", "c2", Num("99999999.99")),
        rev("n16", "c2", "0.01"),
        cost("n17", "c2", Num("12345678.9"), category="hosting"),
        rev("n22", "c5", "3"),
        cost("n23", "c5", "1", cost_function="Infrastructure"),
        cost("n24", "c5", "1", cost_function="Support"),
    ]
    cases.append(Case("h_amounts", "JSON-number and string amounts summed exactly (0.1 + 0.2), "
                      "trailing zeros, thirds in the ratios",
                      default(), ledger_of(items)))

    # -- timestamps -----------------------------------------------------------------------
    items = [
        rev("t1", "c1", "1", when="2026-03-10T14:45:30.25+02:00"),   # 12:45:30.25Z: watermark
        rev("t2", "c1", "2", when="2026-03-10T07:30:00-05:00"),      # 12:30Z
        rev("t3", "c1", "4", when="2026-03-10T12:30:00-00:00"),
        rev("t4", "c1", "8", when="2026-03-09T14:00:00+01:00"),      # 13:00Z: in 24h
        rev("t5", "c1", "16", when="2026-03-09T13:59:59.999999999+01:00"),  # 12:59:59: out
        rev("t6", "c1", "32", when="2026-03-11T01:00:00+14:00"),     # 11:00Z
        rev("t7", "c1", "64", when="2026-03-09T23:30:00-12:00"),     # 2026-03-10T11:30Z
        rev("t8", "c2", "128", when="2026-02-08T12:59:59.5Z"),       # 30d boundary: late
        rev("t9", "c2", "256", when="2026-02-08T13:00:00Z"),         # 30d: oldest bucket
        rev("t10", "c2", "512", when="2026-03-03T18:00:00+05:30"),   # 12:30Z, 7d boundary: out
        rev("t11", "c2", "1024", when="2026-03-03T13:00:00.000Z"),   # 7d: in
        rev("t12", "c2", "2048", when="2026-03-10T12:45:30.125Z"),
    ]
    cases.append(Case("h_timestamps", "RFC 3339 offsets, fractional seconds, bucket boundaries "
                      "across offsets, a fractional watermark", default(), ledger_of(items)))

    # RFC 3339 (section 5.6, NOTE) allows lower-case 't' and 'z'.
    items = [
        rev("l1", "c1", "1", when="2026-03-10t12:00:00z"),
        rev("l2", "c1", "2", when="2026-03-10T11:00:00Z"),
    ]
    cases.append(Case("h_timestamp_lowercase", "RFC 3339 lower-case 't' and 'z'",
                      default(), ledger_of(items)))

    # -- tagging --------------------------------------------------------------------------
    items = [rev("r1", "c1", "100000")]
    number = 0
    for function, categories in DEFAULT_RULES:
        for category in categories:
            for variant in (category, category.upper(), category.title()):
                number += 1
                items.append(cost(f"t{number}", "c1", str(number), category=variant))
                number += 1
                items.append(cost(f"t{number}", None, str(number), category=variant))
    items += [
        cost("w1", "c1", "1000", cost_function="Support", category="hosting"),
        cost("w2", "c1", "2000", cost_function="Excluded", category="hosting"),
        cost("w3", "c1", "4000", cost_function="Onboarding", category="catering"),
        cost("w4", "c1", "8000", cost_function=None, category="TRAINING"),
        cost("w5", "c1", "1", category="hosting "),                   # untagged: not a name
        cost("w6", "c1", "1", category="host"),                       # untagged: no substring
    ]
    cases.append(Case("h_tagging", "every default category in three cases, for a customer and "
                      "unattributed; explicit cost_function wins over category",
                      default(), ledger_of(items)))

    # cost_function is an enumeration: a value in another case is not one of the six.
    items = [
        rev("r1", "c1", "100"),
        cost("k1", "c1", "10", cost_function="infrastructure"),
        cost("k2", "c1", "10", cost_function="SUPPORT"),
        cost("k3", "c1", "10", cost_function="Support"),
    ]
    cases.append(Case("h_cost_function_case", "cost_function values are case-sensitive "
                      "(categories are not)", default(), ledger_of(items)))

    # -- FX -------------------------------------------------------------------------------
    fx_config = Config(fx={"EUR": "1.0825", "GBP": "1.2650", "CHF": "1.13"})
    items = [
        rev("f1", "c1", "100", currency="EUR"),
        rev("f2", "c1", Num("0.1"), currency="EUR"),
        rev("f3", "c1", "10.01", currency="GBP"),
        rev("f4", "c1", "5", currency="USD"),
        cost("f5", "c1", "10", currency="GBP", cost_function="Infrastructure"),
        cost("f6", None, "3.3333", currency="CHF", cost_function="Support"),
        rev("f7", "c1", "1", currency="JPY"),
        rev("f8", "c2", "-7", currency="EUR"),
    ]
    cases.append(Case("h_fx_usd", "static FX rates into USD; no rate: unsupported_currency",
                      fx_config, ledger_of(items)))
    items = [
        rev("f1", "c1", "100", currency="USD"),
        rev("f2", "c1", "100", currency="EUR"),
        cost("f3", "c1", "9.99", currency="USD", category="cloud"),
        cost("f4", "c1", "1", currency="GBP", category="cloud"),     # no GBP rate here
        rev("f5", "c2", Num("0.3"), currency="USD"),
    ]
    cases.append(Case("h_fx_eur", "reporting currency EUR with a USD rate",
                      Config(reporting_currency="EUR", fx={"USD": "0.9238"}), ledger_of(items)))

    # -- custom tagging rules replace the defaults ---------------------------------------
    rules_config = Config(rules=[("Support", ["zendesk", "HOSTING"]),
                                 ("Infrastructure", ["aws", "hosting"]),
                                 ("Excluded", ["party"])])
    items = [
        rev("r1", "c1", "1000"),
        cost("k1", "c1", "10", category="hosting"),       # Support: the first match wins
        cost("k2", "c1", "20", category="AWS"),
        cost("k3", "c1", "40", category="Zendesk"),
        cost("k4", "c1", "80", category="cloud"),         # untagged: defaults not applied
        cost("k5", "c1", "160", cost_function="Onboarding"),
        cost("k6", "c1", "320", category="party"),
    ]
    cases.append(Case("h_custom_rules", "tagging rules in the config replace the defaults; the "
                      "first match wins", rules_config, ledger_of(items)))

    # -- future events against the wall clock ----------------------------------------------
    items = [
        rev("p1", "c1", "10", when=format_ns(now_ns - D)),
        rev("p2", "c1", "20", when=format_ns(now_ns + 3 * 60 * NS)),    # within the skew
        rev("p3", "c1", "40", when=format_ns(now_ns + 15 * 60 * NS)),   # future_event
        rev("p4", "c1", "80", when="2099-01-01T00:00:00Z"),             # future_event
        rev("p5", "c1", "160", when=format_ns(now_ns - 2 * H)),
    ]
    cases.append(Case("h_future", "future_event relative to the wall clock plus 5m; the "
                      "watermark is never dragged forward", default(), ledger_of(items)))

    # -- nothing applied ------------------------------------------------------------------
    items = ["not json", rev("z1", "c1", "1", currency="XXX"), cost("z2", "c1", "1")]
    cases.append(Case("h_all_rejected", "no applied event: no watermark, zero gauges, null ratios",
                      default(), ledger_of(items)))

    # -- blank lines ----------------------------------------------------------------------
    items = [rev("b1", "c1", "1"), "", "   ", rev("b2", "c1", "2"), " \t ", ""]
    cases.append(Case("h_blank_lines", "blank and whitespace-only lines (one just before the "
                      "final newline) are malformed_json", default(), ledger_of(items)))

    # -- lifetime = false -----------------------------------------------------------------
    items = [
        rev("q1", "c1", "1", when=at(-40 * D)),
        rev("q2", "c1", "2"),
        rev("q3", "c2", "4", when=at(-10 * D)),          # late: windows 24h only
        rev("q4", "c2", "8", when=at(-30 * 60 * NS)),
        cost("q5", None, "1", when=at(-2 * H), cost_function="Support"),
    ]
    cases.append(Case("h_no_lifetime", "lifetime = false: no `all`, late events in nothing",
                      Config(windows=["24h"], lifetime=False), ledger_of(items)))

    # -- the exactness limits (docs/metrics.md, "The exactness limits") -------------------
    # Running totals: each customer and the portfolio keep a budget, integer digits of the
    # sum of |amount| + the most decimal places, within 28. The event that would break it is
    # invalid_field; every figure that is shown stays exact.
    items = [
        rev("s1", "c1", "1000000"),
        rev("s2", "c1", "0.1234567890123456789012345678"),   # c1: 7 + 28 digits: invalid
        rev("s3", "c1", "0.12345678901234567891"),           # c1: 7 + 20: fine
        rev("s4", "c1", "12345678"),                         # c1: 8 + 20 = 28: fine
        rev("s5", "c1", "90000000"),                         # c1: 9 + 20: invalid
        cost("s6", "c1", "-90000000", cost_function="Infrastructure"),  # |amount|: invalid
        rev("s7", "c2", "0.1234567890123456789012345678"),   # c2 fine, portfolio: invalid
        cost("s8", None, "50000000", cost_function="Support"),          # portfolio: 8 + 20
        cost("s9", None, "40000000", cost_function="Support"),          # portfolio: 9 + 20
        cost("s10", "c1", "9999999999999999999999999999", cost_function="Excluded"),  # no budget
        rev("s11", "c3", "5"),
        rev("s5", "c1", "1"),                                # the rejected s5 left no id
    ]
    cases.append(Case("h_precision_sum", "an event that would make a running total need more "
                      "than 28 digits is invalid_field (customer and portfolio budgets, "
                      "|amount|); all else stays exact", default(), ledger_of(items)))

    items = [
        rev("o1", "c1", "1"),
        rev("o1", "c1", "0.1234567890123456789012345678"),   # duplicate: not checked
        rev("o2", "c1", "0.1234567890123456789012345678", when="2099-01-01T00:00:00Z"),
        rev("o3", "c2", "2"),
        rev("o4", "c3", "0.1234567890123456789012345678"),   # customer_limit before budget
        cost("o5", "c1", "1234.567890123456789012345678", currency="EUR"),  # FX, then tagging
        cost("o6", "c1", "1234.567890123456789012345678", currency="JPY"),  # no rate first
        rev("o7", "c1", "99999999999999999999", when=at(-40 * D)),   # late: counts (in all)
        rev("o8", "c1", "0.12345678"),                       # c1: 21 + 8: invalid
        rev("o9", "c2", "0.1234567"),                        # portfolio: 21 + 7: fine
        cost("o10", None, "0.12345678", cost_function="Support"),  # portfolio: 21 + 8
        cost("o11", "c2", "0.12345678", cost_function="Excluded"),  # Excluded: no budget
        rev("o8", "c2", "1"),
    ]
    cases.append(Case("h_precision_order", "the exactness checks after unsupported_currency "
                      "(FX) and after future_event, duplicates and customer_limit (budget); a "
                      "late event counts in `all`", Config(max_customers=2, fx={"EUR": "1.0825"}),
                      ledger_of(items)))

    items = [
        rev("n1", "c1", "1"),
        rev("n2", "c1", "9999999999999999999999999999", when=at(-2 * D)),  # late: no series
        rev("n3", "c1", "0.12345678901234567890123456"),    # c1: 1 + 26: fine
        rev("n4", "c1", "0.1234567890123456789012345678"),  # c1: 1 + 28: invalid
    ]
    cases.append(Case("h_precision_no_lifetime", "lifetime = false: a late event reaches no "
                      "series and takes nothing from the budgets",
                      Config(windows=["24h"], lifetime=False), ledger_of(items)))

    # Amounts: at most 28 significant digits and 28 decimal places, trailing zeros after the
    # point not counted.
    items = [
        rev("y1", "c1", "0.00000000000000000000000000001"),  # 29 places: invalid
        rev("y2", "c1", Num("1e-29")),                        # 29 places: invalid
        rev("y3", "c1", Num("1E-28")),                        # the smallest amount
        rev("y4", "c2", "0.0000000000000000000000000001"),
        rev("y5", "c2", "0.90000000000000000000000000000000"),  # 0.9: trailing zeros
        rev("y5b", "c2", "0.0000000000000000000000000002", currency="GBP"),  # x 1.5 = 3E-28
        rev("y6", "c3", "1"),                # portfolio: 1 + 28 places: invalid
        cost("y7", "c2", "1", cost_function="Excluded"),   # no budget
    ]
    cases.append(Case("h_precision_scale", "more than 28 decimal places is invalid_field even "
                      "with one significant digit; 28 places then leave no integer digit",
                      Config(fx={"GBP": "1.5"}), ledger_of(items)))

    fx_exact = Config(fx={"EUR": "1.0825", "GBP": "1.5"})
    items = [
        rev("v1", "c1", "1234.567890123456789012345678", currency="EUR"),  # 31 digits: invalid
        rev("v2", "c1", "0.0000000000000000000000000001", currency="EUR"),  # 32 places: invalid
        rev("v3", "c1", "1234.5678901234567890123", currency="EUR"),        # 27 digits: fine
        rev("v5", "c1", "1"),
        cost("v6", None, "0.001", currency="GBP", cost_function="Support"),
    ]
    cases.append(Case("h_precision_fx", "amount x rate must be exact in 28 digits and 28 places, "
                      "else invalid_field", fx_exact, ledger_of(items)))
    items = [
        rev("w1", "c1", "1000000000000000000000000000"),    # 28 integer digits
        rev("w2", "c1", "2", currency="GBP"),               # 2 x 1.5 = 3: no decimal place
    ]
    cases.append(Case("h_precision_fx_trailing_zero", "a converted amount's trailing zeros after "
                      "the point take no decimal place from the budget",
                      Config(fx={"GBP": "1.5"}), ledger_of(items)))

    items = [
        rev("z1", "c1", "0.000003"),
        cost("z2", "c1", "1000000", cost_function="Infrastructure"),   # GM-M: 12 digits
        rev("z3", "c2", "0.000003"),
        cost("z4", "c2", "0.000001", cost_function="Infrastructure"),  # GM-M 2/3 ...
        cost("z5", "c2", "1000000", cost_function="Support"),          # ... to drag's places
        rev("z6", "c3", "0.0003"),
        cost("z7", "c3", "1000000", cost_function="Infrastructure"),   # 10 digits: 18 places
        rev("z8", "c4", "4"),
        cost("z9", "c4", "49382715604.00000000000000002", cost_function="Onboarding"),
        rev("z10", "c5", "4"),
        cost("z11", "c5", "49382715604.00000000000000006", cost_function="Onboarding"),
    ]
    cases.append(Case("h_precision_ratio", "ratios of k >= 10 integer digits keep 28 - k places "
                      "(GM-M and drag alike, the larger k decides), ties to even",
                      default(), ledger_of(items)))
    # 18 places: kept apart, since 18 decimal places leave the portfolio 10 integer digits.
    items = [
        rev("t1", "c1", "2"),
        cost("t2", "c1", "0.000000000000000001", cost_function="Support"),   # 5E-19 -> 0
        rev("t3", "c2", "2"),
        cost("t4", "c2", "0.000000000000000003", cost_function="Support"),   # 1.5E-18 -> 2E-18
        rev("t5", "c3", "2"),
        cost("t6", "c3", "0.000000000000000005", cost_function="Support"),   # 2.5E-18 -> 2E-18
        cost("t7", "c3", "0.000000000000000007", cost_function="Infrastructure"),  # 3.5E-18
        rev("t8", "c4", "3"),
        cost("t9", "c4", "1", cost_function="Infrastructure"),
        cost("t10", "c4", "1", cost_function="Implementation"),
    ]
    cases.append(Case("h_precision_ratio_ties", "ratios half-even to 18 places: ties to even, "
                      "thirds; GM-O = GM-M - drag", default(), ledger_of(items)))

    items = [rev(f"o{i}", "c1", "9999999999999999999999999999") for i in range(10)]
    items += [
        rev("o-zero", "c1", Num("0.00")),                   # zero: nothing to add
        rev("o-neg", "c1", "-1"),                           # |amount| counts: invalid
        cost("o-excl", "c1", "9999999999999999999999999999", cost_function="Excluded"),
        rev("o-last", "c2", "1"),                           # portfolio full: invalid
    ]
    cases.append(Case("h_overflow", "ten 28-digit amounts: the first fills the budget, the nine "
                      "others (whose sum would pass 2^96) are invalid_field", default(),
                      ledger_of(items)))

    # Money precision: cents, totals around 1e20 per customer, FX to 4 places: all exact.
    rng = random.Random(20260310)
    items = []
    for number in range(120):
        customer = rng.choice(["c1", "c2", "c3", None])
        amount = Decimal(rng.randrange(1, 10 ** 21)) / 100      # up to 1e19, in cents
        if rng.random() < 0.1:
            amount = -amount
        when = at(-rng.randrange(0, 35 * 24) * H - rng.randrange(0, 3600) * NS)
        currency = rng.choice(["USD", "USD", "EUR"])
        text = format(amount, "f")
        if customer is not None and rng.random() < 0.5:
            items.append(rev(f"m{number}", customer, text, when=when, currency=currency))
        else:
            items.append(cost(f"m{number}", customer, text, when=when, currency=currency,
                              cost_function=rng.choice(MARGIN_FUNCTIONS)))
    cases.append(Case("h_precision_cents", "amounts in cents, totals up to ~1e20, FX at 4 places: "
                      "nothing rejected, every total exact",
                      Config(fx={"EUR": "1.0825"}), ledger_of(items)))
    return cases


def build_late_mix(binary, base):
    """A recent generated ledger followed by an older one (ids renamed, its own repeats
    dropped so that no repeat falls beyond the guaranteed dedup horizon), cut into chunks and
    interleaved: many events arrive late, many after the watermark has moved on."""
    parts = []
    for index, args in enumerate((
            ["--customers", "12", "--days", "8", "--seed", "66", "--bad-share", "0.02",
             "--duplicate-share", "0.02", "--end", "2026-01-01T00:00:00Z"],
            ["--customers", "15", "--days", "50", "--seed", "67", "--bad-share", "0.02",
             "--end", "2025-12-28T00:00:00Z"])):
        path = f"{base}.part{index}.jsonl"
        out = run_binary(binary, ["generate"] + args + ["--output", path])
        if out.returncode != 0:
            return None, f"generate failed ({out.returncode}): {out.stderr.decode(errors='replace')}"
        with open(path, "rb") as handle:
            parts.append(split_lines(handle.read()))
    recent, old = parts
    seen, kept = set(), []
    for raw in old:
        obj = load_json_object(raw)
        event_id = obj.get("event_id") if obj else None
        if isinstance(event_id, str):
            if event_id in seen:
                continue
            seen.add(event_id)
            raw = raw.replace(json.dumps(event_id).encode(), json.dumps("old-" + event_id).encode())
        kept.append(raw)
    # The old ledger arrives in four chunks, between chunks of the recent one.
    lines, step_recent, step_old = [], -(-len(recent) // 4), -(-len(kept) // 4)
    for i in range(4):
        lines += recent[i * step_recent:(i + 1) * step_recent]
        lines += kept[i * step_old:(i + 1) * step_old]
    return b"\n".join(lines) + b"\n", None


def generated_cases():
    fx = {"USD": "0.9238", "GBP": "1.169"}
    custom = Config(windows=["1d", "7d"], bucket="1h", lifetime=True,
                    reporting_currency="EUR", fx=fx)
    no_lifetime = Config(windows=["6h", "1d", "7d"], bucket="2h", lifetime=False,
                         reporting_currency="EUR", fx=fx)
    day_buckets = Config(windows=["1d", "7d", "28d"], bucket="1d", lifetime=True,
                         fx={"EUR": "1.0825", "GBP": "1.2650"})

    def gen(customers, days, seed, bad, dup, *more):
        return ["--customers", str(customers), "--days", str(days), "--seed", str(seed),
                "--bad-share", str(bad), "--duplicate-share", str(dup)] + list(more)

    return [
        Case("g_small", "generated: 5 customers, 3 days, bad lines and duplicates",
             Config.default(), generate=gen(5, 3, 11, 0.08, 0.08)),
        Case("g_medium", "generated: 50 customers, 45 days (longer than 30d)",
             Config.default(), generate=gen(50, 45, 22, 0.01, 0.02)),
        Case("g_custom", "generated, windows 1d/7d on 1h buckets, reporting EUR with FX",
             custom, generate=gen(20, 12, 33, 0.03, 0.03, "--end", "2026-06-15T09:30:00Z")),
        Case("g_no_lifetime", "generated, lifetime = false, 2h buckets, reporting EUR",
             no_lifetime, generate=gen(15, 10, 44, 0.03, 0.03)),
        Case("g_day_buckets", "generated, 1d buckets, windows 1d/7d/28d, FX into USD",
             day_buckets, generate=gen(10, 35, 55, 0.02, 0.02)),
        Case("g_late_mix", "two generated ledgers interleaved, the older one arriving late",
             Config.default(), build=build_late_mix),
        Case("g_late_mix_no_lifetime", "the same, windows 24h/7d, lifetime = false",
             Config(windows=["24h", "7d"], lifetime=False), build=build_late_mix),
    ]


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/debug/marginstream",
                        help="the marginstream binary (default: target/debug/marginstream)")
    parser.add_argument("--only", action="append", default=[],
                        help="run only the cases whose name contains this (repeatable)")
    parser.add_argument("--skip", action="append", default=[],
                        help="skip the cases whose name contains this (repeatable)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the ledgers, configs and outputs to DIR and keep them")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()

    binary = os.path.abspath(args.binary)
    cases = hand_cases(time.time_ns()) + generated_cases()
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    if args.skip:
        cases = [c for c in cases if not any(o in c.name for o in args.skip)]
    if args.list:
        for case in cases:
            print(f"{case.name:28} {case.description}")
        return 0
    if not os.access(binary, os.X_OK):
        print(f"error: the binary {binary} is missing: run `cargo build -p marginstream` first")
        print(f"independent-check: 0 passed, {len(cases)} failed")
        return 1

    started = time.monotonic()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="marginstream-independent-") as tmp:
        workdir = args.keep or tmp
        os.makedirs(workdir, exist_ok=True)
        for case in cases:
            t0 = time.monotonic()
            try:
                outcome, error = run_case(binary, case, workdir)
            except subprocess.TimeoutExpired:
                outcome, error = None, "the binary timed out"
            seconds = time.monotonic() - t0
            if error:
                failed += 1
                print(f"FAIL {case.name}: {error}")
                continue
            expected, diff = outcome
            applied = sum(expected["events"][t]["applied"] for t in EVENT_TYPES)
            late = sum(expected["events"][t]["late"] for t in EVENT_TYPES)
            dups = sum(expected["events"][t]["duplicate"] for t in EVENT_TYPES)
            rejected = sum(expected["rejected"].values())
            stats = (f"{len(expected['customers'])} customers, {applied} applied, {late} late, "
                     f"{dups} duplicate, {rejected} rejected; {seconds:.2f}s")
            if expected["grey_duplicates"]:
                print(f"  note {case.name}: {len(expected['grey_duplicates'])} repeats older than "
                      "the guaranteed dedup horizon (counted as duplicates here)")
            if diff:
                failed += 1
                print(f"FAIL {case.name} ({case.description}): {stats}")
                diff.print()
            else:
                passed += 1
                print(f"ok   {case.name} ({case.description}): {stats}")
    print(f"{len(cases)} cases in {time.monotonic() - started:.1f}s")
    print(f"independent-check: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
