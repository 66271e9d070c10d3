//! Integration tests of marginstream: through its command line (golden replays, the
//! configuration files shipped in `config/`, command-line behaviour, `run` on a real
//! broker) and through its library (configuration validation, the live loop under faults on
//! librdkafka's mock cluster).

mod cli;
mod config;
mod config_files;
mod exposure;
mod faults;
mod golden;
mod layout;
mod live;
