//! The rejected-events file of replay: one JSON object per rejected line, with its reason,
//! its error and the original line (`docs/ledger-format.md`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use marginstream_consumer::{Offset, Partition};
use marginstream_model::Rejection;
use serde_json::json;

use super::pipeline::Batch;

/// Writes rejected lines as JSONL.
pub(super) struct RejectedWriter {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    /// The input files as given, when there are several: a record then names its file.
    files: Vec<String>,
}

impl RejectedWriter {
    pub(super) fn create(path: &Path, files: Vec<String>) -> anyhow::Result<RejectedWriter> {
        let file = File::create(path).with_context(|| {
            format!("cannot create the rejected-events file {}", path.display())
        })?;
        Ok(RejectedWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            path: path.to_owned(),
            written: 0,
            files,
        })
    }

    pub(super) fn write(
        &mut self,
        input: usize,
        line_number: u64,
        line: &[u8],
        truncated_from: Option<u64>,
        origin: Option<(Partition, Offset)>,
        rejection: &Rejection,
    ) -> anyhow::Result<()> {
        let mut record = json!({
            "reason": rejection.reason.as_str(),
            "error": rejection.message,
        });
        match origin {
            Some((partition, offset)) => {
                record["partition"] = json!(partition.0);
                record["offset"] = json!(offset.0);
            }
            None => {
                // With one input the record is as it always was: golden files and the
                // independent checker read `line_number` alone.
                if let Some(file) = self.files.get(input) {
                    record["file"] = json!(file);
                }
                record["line_number"] = json!(line_number);
            }
        }
        match std::str::from_utf8(line) {
            Ok(text) => record["line"] = json!(text),
            Err(_) => {
                record["line_base64"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(line))
            }
        }
        if let Some(length) = truncated_from {
            record["truncated_from"] = json!(length);
        }
        serde_json::to_writer(&mut self.out, &record)?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        self.written += 1;
        Ok(())
    }

    /// Writes line `index` of `batch` with its rejection.
    pub(super) fn write_line<T>(
        &mut self,
        batch: &Batch<T>,
        index: usize,
        rejection: &Rejection,
    ) -> anyhow::Result<()> {
        let line = &batch.lines.lines[index];
        self.write(
            batch.input,
            line.number,
            batch.lines.line(index),
            line.truncated_from,
            batch.origins.get(index).copied(),
            rejection,
        )
    }

    pub(super) fn finish(mut self) -> anyhow::Result<u64> {
        self.out
            .flush()
            .with_context(|| format!("cannot write to {}", self.path.display()))?;
        Ok(self.written)
    }
}
