#!/usr/bin/env python3
"""Who may read the figures (contract section 12, issue #13): `marginstream run` behind TLS
and basic auth, scraped by a real Prometheus, on a real broker (Tansu).

1. A certificate authority, a server certificate for 127.0.0.1, a client CA with a client
   certificate, and a foreign self-signed client certificate, made with the openssl CLI.
2. A generated ledger in a topic, and two `marginstream run` on it (each its own group):
   "basic" with TLS and basic auth, "mtls" with RequireAndVerifyClientCert.
3. A real Prometheus scrapes both over HTTPS (`tls_config.ca_file`, `basic_auth` for one,
   a client certificate for the other), and a third job with a wrong password.
4. Checks: both targets up, the wrong-password job down on a 401; every lifetime gauge in
   Prometheus equals /metrics fetched with credentials; without credentials, with a wrong
   password, with an unknown user: 401 with the challenge and no figure, on /metrics and on
   the query API's paths; plain HTTP to the TLS port gets no HTTP answer and no figure;
   /healthz and /readyz answer without credentials; with mutual TLS, a client without a
   certificate or with a foreign one is refused, one from the client CA is served.

Usage: web_auth.py --binary target/debug/marginstream. Last line `web-auth: N passed,
M failed`; exit 1 on failure or when prometheus, openssl or the broker is missing.
"""

import argparse
import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard as dash  # noqa: E402  (Report and the Prometheus API helper)
import prom  # noqa: E402  (the shared Prometheus helpers)

ROOT = Path(__file__).resolve().parents[2]

# A bcrypt hash (cost 10, `htpasswd -nbBC 10 prometheus scrape-secret` writes the same kind)
# of PASSWORD: what an operator puts in basic_auth_users.
PASSWORD = "scrape-secret"
PASSWORD_HASH = "$2b$10$DJufiLIZqHziy6uhkpDkWuwNmJbJW/b2RMflXtDjcFmYXRA0lGcc6"
CHALLENGE = 'Basic realm="marginstream"'


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(work):
    """ca.crt signs server.crt (127.0.0.1, localhost); client-ca.crt signs client.crt;
    foreign.crt is self-signed."""
    ext = work / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client_ext = work / "client.ext"
    client_ext.write_text("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "client-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=test {ca}",
                cwd=work)
    for name, ca, extfile in (("server", "ca", ext), ("client", "client-ca", client_ext)):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=work)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", str(extfile), cwd=work)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "foreign.key", "-out", "foreign.crt", "-days", "2", "-subj", "/CN=foreign", cwd=work)


def context(work, identity=None):
    """A client TLS context trusting ca.crt, presenting `identity`.crt when given."""
    ctx = ssl.create_default_context(cafile=str(work / "ca.crt"))
    if identity:
        ctx.load_cert_chain(str(work / f"{identity}.crt"), str(work / f"{identity}.key"))
    return ctx


def get(port, path, ctx, user=None, password=None):
    """GET over HTTPS: (status, headers dict lower-cased, body text)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def refused(port, path, ctx):
    """Whether a TLS client is refused (handshake or first read fails), with what it got."""
    try:
        status, _, body = get(port, path, ctx)
        return False, f"{status} {body[:80]!r}"
    except (ssl.SSLError, ConnectionError, OSError) as error:
        return True, str(error)


def plain_http(port):
    """The bytes a plain HTTP request to the TLS port gets back."""
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionError, socket.timeout):
            pass
    return data


def figures(text):
    """The lifetime gauges of an exposition: {(name, labels): value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or 'window="all"' not in line:
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = tuple(sorted(p for p in labels.rstrip("}").split(",") if p))
        out[(name, pairs)] = float(value)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    args = parser.parse_args()
    binary = str(Path(args.binary).resolve())
    report = dash.Report()
    for tool in ("prometheus", "openssl"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: install Debian's {'prometheus' if tool == 'prometheus' else 'openssl'} package")
            print("web-auth: 0 passed, 1 failed")
            return 1

    work = Path(tempfile.mkdtemp(prefix="marginstream-web-auth-"))
    processes = []
    broker_port = None
    try:
        make_pki(work)
        (work / "password").write_text(PASSWORD)
        (work / "wrong-password").write_text("not-" + PASSWORD)
        # Relative paths: resolved against the web config's directory, as in the toolkit.
        (work / "web-basic.yml").write_text(f"""tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  prometheus: "{PASSWORD_HASH}"
  grafana: "{PASSWORD_HASH}"
""")
        (work / "web-mtls.yml").write_text("""tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_ca_file: client-ca.crt
  client_auth_type: RequireAndVerifyClientCert
""")

        brokers, broker_port = prom.start_broker()
        suffix = f"{os.getpid()}-{int(time.time())}"
        ports = {}
        for name in ("basic", "mtls"):
            ports[name] = prom.free_port()
            (work / f"{name}.toml").write_text(f"""[kafka]
brokers = "{brokers}"
topic = "web-auth-{suffix}"
dlq_topic = "web-auth-{suffix}.dlq"
group_id = "web-auth-{name}-{suffix}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[metrics]
listen = "127.0.0.1:{ports[name]}"
web_config_file = "{work / f'web-{name}.yml'}"
[ledger]
windows = ["7d"]
[state]
dir = "{work / f'state-{name}'}"
""")
        ledger = work / "ledger.jsonl"
        subprocess.run([binary, "generate", "--customers", "6", "--days", "10", "--seed", "13",
                        "--end", "now", "--output", str(ledger)], check=True, capture_output=True)
        config = str(work / "basic.toml")
        subprocess.run([binary, "create-topics", "--config", config, "--partitions", "2"],
                       check=True, capture_output=True)
        subprocess.run([binary, "produce", "--config", config, "--input", str(ledger)],
                       check=True, capture_output=True)
        for name in ("basic", "mtls"):
            log = open(work / f"run-{name}.log", "w")
            processes.append(subprocess.Popen([binary, "run", "--config", str(work / f"{name}.toml")],
                                              stdout=log, stderr=subprocess.STDOUT))

        # Ready: /readyz over TLS without credentials (basic); with the client certificate (mtls).
        for name, ctx in (("basic", context(work)), ("mtls", context(work, "client"))):
            deadline = time.time() + 90
            while True:
                try:
                    if get(ports[name], "/readyz", ctx)[0] == 200:
                        break
                except (OSError, ssl.SSLError):
                    pass
                if time.time() > deadline or any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"run ({name}) did not become ready: see {work}/run-{name}.log")
                time.sleep(0.3)

        prometheus_port = prom.free_port()
        prometheus = prom.start(work, f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: marginstream
    scheme: https
    tls_config:
      ca_file: ca.crt
    basic_auth:
      username: prometheus
      password_file: password
    static_configs:
      - targets: ["127.0.0.1:{ports['basic']}"]
  - job_name: marginstream-mtls
    scheme: https
    tls_config:
      ca_file: ca.crt
      cert_file: client.crt
      key_file: client.key
    static_configs:
      - targets: ["127.0.0.1:{ports['mtls']}"]
  - job_name: marginstream-wrong-password
    scheme: https
    tls_config:
      ca_file: ca.crt
    basic_auth:
      username: prometheus
      password_file: wrong-password
    static_configs:
      - targets: ["127.0.0.1:{ports['basic']}"]
""", work / "data", prometheus_port)
        processes.append(prometheus)

        # Targets: the two with the right credentials up, the wrong password down on a 401.
        health = {}
        deadline = time.time() + 60
        while time.time() < deadline:
            targets = dash.api(prometheus_port, "targets")["data"]["activeTargets"]
            health = {t["labels"]["job"]: (t["health"], t.get("lastError", "")) for t in targets}
            if (health.get("marginstream", ("",))[0] == "up" and health.get("marginstream-mtls", ("",))[0] == "up"
                    and health.get("marginstream-wrong-password", ("",))[0] == "down"):
                break
            time.sleep(0.5)
        report.check(health.get("marginstream", ("",))[0] == "up",
                     f"Prometheus scrapes run over TLS with basic auth: {health.get('marginstream')}")
        report.check(health.get("marginstream-mtls", ("",))[0] == "up",
                     f"Prometheus scrapes run over mutual TLS: {health.get('marginstream-mtls')}")
        wrong = health.get("marginstream-wrong-password", ("", ""))
        report.check(wrong[0] == "down" and "401" in wrong[1],
                     f"a scrape with a wrong password is refused with 401: {wrong}")

        # Samples: every lifetime gauge in Prometheus equals /metrics fetched with credentials.
        status, _, body = get(ports["basic"], "/metrics", context(work), "prometheus", PASSWORD)
        expected = figures(body)
        report.check(status == 200 and len(expected) > 20,
                     f"/metrics with credentials: 200 with the gauges ({status}, {len(expected)} lifetime series)")
        time.sleep(2)  # a scrape after the fetch above
        result = dash.api(prometheus_port, "query", query='{job="marginstream",window="all"}')["data"]["result"]
        scraped = {}
        for r in result:
            labels = {k: v for k, v in r["metric"].items() if k not in ("job", "instance", "__name__")}
            # The exposition's escaping, to compare with /metrics's text.
            escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
            pairs = tuple(sorted(f'{k}="{v}"' for k, v in escaped.items()))
            scraped[(r["metric"]["__name__"], pairs)] = float(r["value"][1])
        differ = [k for k in expected if scraped.get(k) != expected[k]]
        report.check(expected and not differ and set(scraped) == set(expected),
                     f"Prometheus's samples equal /metrics ({len(scraped)} vs {len(expected)} series; differ: {differ[:3]})")
        customer = next((dict(p.split("=", 1) for p in k[1]).get("customer_id") for k in expected
                         if any(p.startswith("customer_id=") for p in k[1])), '"none"').strip('"')
        mtls = dash.api(prometheus_port, "query", query='count({job="marginstream-mtls",window="all"})')
        mtls_count = int(float(mtls["data"]["result"][0]["value"][1])) if mtls["data"]["result"] else 0
        report.check(mtls_count == len(expected),
                     f"the mutual-TLS target has the same series ({mtls_count} vs {len(expected)})")

        # Refusals: 401 with the challenge and no figure.
        ctx = context(work)
        for path in ("/metrics", "/api/v1/customers/x", "/api/v1/portfolio", "/nothing-here"):
            for what, user, password in (("no credentials", None, None),
                                         ("a wrong password", "prometheus", "wrong"),
                                         ("an unknown user", "mallory", PASSWORD)):
                status, headers, body = get(ports["basic"], path, ctx, user, password)
                report.check(status == 401 and headers.get("www-authenticate") == CHALLENGE
                             and "marginstream_" not in body and customer not in body,
                             f"{path} with {what}: 401, challenge, no figure ({status}, {headers.get('www-authenticate')!r})")
        # With credentials the API answers: a customer not held is its own 404, the
        # portfolio a 200 with figures.
        for path, answer in (("/api/v1/customers/x", 404), ("/api/v1/portfolio", 200)):
            status, _, body = get(ports["basic"], path, ctx, "grafana", PASSWORD)
            report.check(status == answer, f"{path} with credentials gets past auth ({answer}): {status}")
        status, _, body = get(ports["basic"], "/api/v1/customers?limit=1000", ctx, "grafana", PASSWORD)
        report.check(status == 200 and '"customer_id"' in body,
                     f"the API lists the customers with credentials: {status}")
        for probe in ("/healthz", "/readyz"):
            status, _, body = get(ports["basic"], probe, ctx)
            report.check(status == 200 and "marginstream_" not in body,
                         f"{probe} answers without credentials: {status}")

        # Plain HTTP to the TLS port: nothing served.
        data = plain_http(ports["basic"])
        report.check(not data.startswith(b"HTTP/") and b"marginstream_" not in data and customer.encode() not in data,
                     f"plain HTTP to the TLS port gets no HTTP answer and no figure ({len(data)} bytes: {data[:20]!r})")

        # Mutual TLS.
        for what, identity in (("no client certificate", None), ("a foreign client certificate", "foreign")):
            for path in ("/metrics", "/healthz"):
                ok, detail = refused(ports["mtls"], path, context(work, identity))
                report.check(ok, f"mutual TLS, {what}, {path}: refused ({detail})")
        status, _, body = get(ports["mtls"], "/metrics", context(work, "client"))
        report.check(status == 200 and len(figures(body)) == len(expected),
                     f"mutual TLS with the client CA's certificate: 200 with the gauges ({status})")
    except Exception as error:  # noqa: BLE001 - report and fail, whatever broke
        report.check(False, f"ERROR {error}")
    finally:
        prom.teardown(processes, broker_port, work, report.failed)
    print(f"web-auth: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
