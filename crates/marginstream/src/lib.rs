//! marginstream, the application: configuration, `run` (the Kafka loop and its HTTP
//! endpoint), `replay`, `generate` and the Kafka helpers, as a library that the binary, the
//! integration tests and the benches all drive. The binary (`main.rs`) is the command line,
//! logging and exit codes, nothing else.
//!
//! - [`config`]: the TOML configuration, its overrides and its validation, and the settings
//!   every other part is built from.
//! - [`clock`]: the wall clock, read in one place and passed in everywhere else.
//! - [`checkpoint`]: the checkpoint file of `run` (format, atomic write, the state
//!   directory's lock).
//! - [`fingerprint`]: the tagging rules and rates a state was built under, and what changed.
//! - [`state_topic`]: the records of the state topic (snapshots in pieces, manifests, keys)
//!   and the scan that finds the latest complete snapshot of a partition.
//! - [`live`]: `run`'s loop (Kafka in, one engine per partition, dead letters,
//!   checkpoints, self-metrics) and [`live::LiveHandle`], which starts it on its own thread.
//! - [`http`]: the `run` command: the loop plus `/metrics`, `/healthz`, `/readyz`, the query
//!   API and shutdown on signals.
//! - [`web`]: who may read the figures: `metrics.web_config_file` (TLS, client certificates,
//!   basic auth) in the Prometheus exporter toolkit's format, and the listener that applies it.
//! - [`replay`]: the engine over a JSONL ledger or the topic read directly, and the backfill
//!   history.
//! - [`generate`]: the deterministic synthetic ledger.
//! - [`kafka_tools`]: `produce` and `create-topics`.
//! - [`pacer`]: `--rate` pacing, shared by `generate` and `produce`.
//! - [`published`]: the readers' side of `run`: immutable snapshots of the live state that
//!   `/metrics` and the query API read without waiting for the loop.
//!
//! The modules depend on each other in one direction: `http` → `web`, `live` → `published`,
//! `checkpoint`, `clock`; `config` → `live` (it builds [`live::LiveSettings`]); `replay`,
//! `kafka_tools`, `web` → `config`; `generate`, `kafka_tools` → `pacer`. Nothing depends on
//! `http`.
//!
//! # Design decisions
//!
//! **The engine is pure; this crate owns time and I/O.** The aggregator never reads a clock
//! or a file. The loop reads the wall clock once per message and passes it in; replay passes
//! the wall clock once per batch (for the future-event guard) and lets the event clock drive
//! the windows.
//!
//! **One thread owns the live state.** The loop thread owns the consumer, the engines and
//! the dead-letter producer, and takes no lock per message. Readers never talk to it: it
//! publishes what changed, in small steps, to a publisher thread that keeps immutable
//! snapshots (`published`), and atomics (readiness, self-metrics). See
//! `docs/architecture.md`.
//!
//! **Errors.** `anyhow` here, with context on every I/O error; the library crates below have
//! one error type each. `main` maps errors to exit codes: 0 success (a closed output pipe
//! included), 1 failure, 2 invalid configuration or usage.

pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod fingerprint;
pub mod generate;
pub mod http;
pub mod kafka_tools;
pub mod live;
pub mod pacer;
pub mod published;
pub mod replay;
pub mod state_topic;
pub mod web;
