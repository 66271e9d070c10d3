# syntax=docker/dockerfile:1.7
# marginstream: `docker build -t marginstream:0.1.0 .` from the repository root (BuildKit,
# the default builder since Docker 23, is needed for the cache mounts and the here-documents
# below). deploy/README.md describes the image; scripts/check-deploy.sh checks this file
# offline (no Docker engine runs where it was written).
#
# Build: librdkafka is compiled from source by rdkafka-sys (bundled, with TLS and zlib), so
# the builder needs a C toolchain, make and perl (all in the rust image) plus the OpenSSL
# and zlib headers and pkg-config. Dependencies are cached across builds in BuildKit cache
# mounts (the cargo registry and target/), which needs no per-crate stub list to maintain.
ARG RUST_VERSION=1.89.0

FROM rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libssl-dev pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build -p marginstream` reads: the workspace manifest, the lock file and
# the crates. tests/, benches/ and examples/ belong to the test package, never built here.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
RUN --mount=type=cache,id=marginstream-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=marginstream-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p marginstream \
    && install -D -m 0755 target/release/marginstream /out/marginstream

# Runtime: the binary links libssl3, libcrypto3, libz, libgcc_s and glibc (bookworm's, as
# in the builder); ca-certificates for TLS to brokers; the openssl CLI for the healthcheck
# over TLS (metrics.web_config_file) and for making certificates (docker-compose.tls.yml).
FROM debian:12.11-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libssl3 ca-certificates openssl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 marginstream \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/marginstream \
        --no-create-home --shell /usr/sbin/nologin marginstream \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/marginstream
COPY --from=builder /out/marginstream /usr/local/bin/marginstream

# The image's default configuration: /metrics on every interface of the container, state
# in the volume. Mount your own file over it (compose: deploy/compose/marginstream.toml;
# Kubernetes: the ConfigMap in deploy/kubernetes/configmap.yaml), or override keys with
# MARGINSTREAM_<SECTION>__<KEY> variables, e.g. MARGINSTREAM_KAFKA__BROKERS=broker:9092.
COPY --chmod=0644 <<'TOML' /etc/marginstream/marginstream.toml
# The marginstream image's default configuration (see the Dockerfile).
[kafka]
brokers = "kafka:9092"

[metrics]
listen = "0.0.0.0:9898"

[state]
dir = "/var/lib/marginstream"
TOML

# The image has no curl: this GET over bash's /dev/tcp succeeds on an HTTP 200 only. When
# the port answers plain HTTP with no HTTP (TLS is on: metrics.web_config_file), it asks
# again over TLS with the openssl CLI, without verifying the certificate (this checks the
# process on loopback, not who it is). /healthz needs no credentials either way; with
# client_auth_type RequireAndVerifyClientCert it is refused (deploy/README.md).
# Usage: marginstream-healthcheck [PORT] [PATH] (defaults 9898 and /healthz).
COPY --chmod=0755 <<'SH' /usr/local/bin/marginstream-healthcheck
#!/bin/bash
set -eu
port=${1:-9898}
path=${2:-/healthz}
request() { printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path"; }
exec 3<>"/dev/tcp/127.0.0.1/$port"
# A TLS port closes on the first bytes that are not TLS, possibly before the request is
# all written: a failed write is an answer too, not a reason to die of SIGPIPE.
trap '' PIPE
request >&3 2>/dev/null || true
status=
IFS= read -r -t 5 status <&3 || true
exec 3<&-
case $status in
"HTTP/1."?" "*) ;;
*)
    status=$(request | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$port" \
        -servername localhost 2>/dev/null | head -n 1) || true
    ;;
esac
case $status in
"HTTP/1."?" 200 "*) exit 0 ;;
*) echo "GET $path: ${status:-no answer}" >&2; exit 1 ;;
esac
SH

USER 10001:10001
WORKDIR /var/lib/marginstream
VOLUME ["/var/lib/marginstream"]
EXPOSE 9898
# Liveness only (/healthz): /readyz stays 503 while assigned partitions are caught up,
# which can take long after a restore. Assumes metrics.listen on port 9898; plain HTTP or
# TLS, whichever the port speaks.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["marginstream-healthcheck", "9898", "/healthz"]
# marginstream handles SIGTERM itself: a final checkpoint, an offset commit, then it
# leaves the group. Give it time to (docker stop -t 120; compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["marginstream"]
CMD ["run", "--config", "/etc/marginstream/marginstream.toml"]
