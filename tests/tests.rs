//! Integration tests of marginstream, through its command line: golden replays, the
//! configuration files shipped in `config/`, and command-line behaviour.

mod cli;
mod config_files;
mod golden;
mod live;
