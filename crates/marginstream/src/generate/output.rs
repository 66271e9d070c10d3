//! Output: buffering and `--rate` pacing.

use std::io::{self, BufWriter, Write};

use crate::pacer::Pacer;

/// The buffered output and, with a rate, its pacing.
pub(super) struct Output<'a> {
    writer: BufWriter<&'a mut dyn Write>,
    /// `None` for no limit.
    pacer: Option<Pacer>,
}

impl<'a> Output<'a> {
    pub(super) fn new(out: &'a mut dyn Write, rate: u64) -> Output<'a> {
        Output {
            writer: BufWriter::with_capacity(256 * 1024, out),
            pacer: Pacer::new(rate),
        }
    }

    /// Paces the lines from now on at `rate` lines per second (0: no limit), as if the
    /// output had just started.
    pub(super) fn pace(&mut self, rate: u64) {
        self.pacer = Pacer::new(rate);
    }

    pub(super) fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.write_all(b"\n")?;
        if let Some(pacer) = self.pacer.as_mut() {
            if pacer.count() {
                // Flush the burst so that a consumer sees it now, then wait until the lines
                // so far are due.
                self.writer.flush()?;
                pacer.wait();
            }
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<()> {
        self.writer.flush()
    }
}
