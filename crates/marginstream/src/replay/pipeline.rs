//! Replay's two threads: a reader that cuts the input into batches of lines and prepares
//! every line (the costly part), and the calling thread that applies the prepared lines in
//! input order. Shared by the replay and by the comparison of two configurations, which
//! differ only in what a line is prepared into and how it is applied.

use anyhow::bail;
use marginstream_consumer::LineBatch;

use super::progress::Reporter;
use super::source::{Origins, Source};
use super::READ_AHEAD_BATCHES;

/// One batch of lines and what the reader made of each.
pub(super) struct Batch<T> {
    /// The lines.
    pub(super) lines: LineBatch,
    /// What `prepare` made of each line, in order; handed to `apply` apart from the batch.
    results: Vec<T>,
    /// Bytes of input read up to this batch, for the progress.
    pub(super) bytes_read: u64,
    /// With --from-kafka, the partition and offset of each line.
    pub(super) origins: Origins,
    /// The index of the input file of the batch (0 with --from-kafka).
    pub(super) input: usize,
}

/// Reads `source` to its end: a reader thread turns line `index` of each batch into a `T`
/// with `prepare`, and `apply` takes each batch and its lines' results on the calling
/// thread, in input order. A bounded channel of [`READ_AHEAD_BATCHES`] between the threads
/// bounds memory; applied batches go back to the reader, so their memory is reused, not
/// page-faulted. Returns the lines and bytes read.
///
/// # Errors
///
/// The first error of reading or of `apply`; either stops both threads.
pub(super) fn read_and_apply<T: Send>(
    mut source: Source,
    reporter: &mut Reporter,
    prepare: impl Fn(&LineBatch, usize) -> T + Sync,
    mut apply: impl FnMut(&Batch<T>, std::vec::Drain<'_, T>) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    let (sender, receiver) = crossbeam_channel::bounded::<Batch<T>>(READ_AHEAD_BATCHES);
    let (recycle, recycled) = crossbeam_channel::bounded::<Batch<T>>(READ_AHEAD_BATCHES + 1);
    let prepare = &prepare;
    std::thread::scope(|scope| -> anyhow::Result<(u64, u64)> {
        let reader_thread = scope.spawn(move || -> anyhow::Result<(u64, u64)> {
            let reader = &mut source;
            let mut bytes_read = 0u64;
            loop {
                let mut results = Vec::new();
                if let Ok(old) = recycled.try_recv() {
                    reader.recycle(old.lines);
                    results = old.results;
                    results.clear();
                }
                let Some((lines, origins, input)) = reader.next_batch()? else {
                    break;
                };
                bytes_read += lines.buffer.len() as u64;
                results.extend((0..lines.len()).map(|index| prepare(&lines, index)));
                let batch = Batch {
                    lines,
                    results,
                    bytes_read: reader.bytes_read(bytes_read),
                    origins,
                    input,
                };
                if sender.send(batch).is_err() {
                    // The applying side stopped on an error of its own, reported there.
                    break;
                }
            }
            Ok((reader.lines_read(), reader.bytes_read(bytes_read)))
        });

        let mut events = 0u64;
        for mut batch in receiver {
            let mut results = std::mem::take(&mut batch.results);
            apply(&batch, results.drain(..))?;
            // The emptied vector keeps its capacity for the reader's next batch.
            batch.results = results;
            events += batch.lines.len() as u64;
            reporter.update(batch.bytes_read, events);
            // The reader may have finished; a batch it no longer wants is dropped.
            let _ = recycle.try_send(batch);
        }
        match reader_thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the reader thread panicked"),
        }
    })
}
