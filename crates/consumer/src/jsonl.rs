//! The JSONL file source: cuts a byte stream (a file or stdin) into batches of lines.
//!
//! [`JsonlReader`] reads the input in chunks of up to [`READ_CHUNK_BYTES`] directly into the
//! buffer of the batch it is building. It keeps four positions in that buffer:
//!
//! ```text
//!  0        base         line_start           filled          buffer.len()
//!  |garbage |lines of the batch |line in progress|zeroed spare space|
//! ```
//!
//! Bytes before `base` belong to batches already copied out (or to blank lines ahead of the
//! batch's first line) and are never looked at again. Every byte between `base` and
//! `line_start` has been scanned; no line end lies between `line_start` and `filled`.
//!
//! Rules: a line ends at `\n`; a `\r` right before it is removed; the last line may lack
//! its `\n`; a line that is empty or only ASCII whitespace is skipped but counted in the
//! line numbers; any other line is returned byte for byte, valid UTF-8 or not.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::mem;

use crate::error::ConsumerError;

/// Bytes asked of the input in one read at most (256 KiB): enough that the cost of a read
/// call is small per byte, and the most a batch's buffer holds beyond its lines.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Bytes asked of the input in one read at least (64 KiB), even when the batch in progress
/// needs fewer to reach its target. Smaller reads would mean more calls; larger ones would
/// mean more bytes past the cut to copy into the next batch.
const READ_CHUNK_BYTES_MIN: usize = 64 * 1024;

/// Memory that one line costs in a batch's index: the batch size counts it along with the
/// line's bytes, so that a batch of very short lines stays as small as one of long lines.
const LINE_REF_BYTES: usize = mem::size_of::<LineRef>();

/// The default target size of a batch, 1 MiB: large enough that the per-batch costs (a
/// channel send, an allocation) vanish against the ~7,000 events it holds, small enough that
/// a few batches in flight between threads stay cheap.
const fn default_batch_bytes() -> usize {
    1 << 20
}

/// The default cap on one line, 16 MiB: far above any sane event (the contract's
/// `ledger.max_event_bytes` defaults to 64 KiB), so that a line only gets truncated when it
/// would be rejected as oversized anyway.
const fn default_line_bytes_max() -> usize {
    16 << 20
}

/// Options of the reader. Every value is valid: zero means a batch per line for
/// `batch_bytes`, and every non-blank line truncated to nothing for `line_bytes_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Target size of a batch in bytes (default 1 MiB): a batch is cut at the first line end
    /// after its size reaches this many bytes. Its size counts the bytes it has consumed
    /// from the input (line ends and blank lines included, but not the dropped tails of
    /// over-long lines) plus `size_of::<LineRef>()` (40 bytes) per line in its index.
    pub batch_bytes: usize,
    /// Hard cap on the bytes of one line kept in memory (default 16 MiB). A longer line is
    /// kept truncated to this many bytes and flagged with its full length in
    /// [`LineRef::truncated_from`]; the rest of it is read and dropped without being
    /// buffered, so memory stays bounded whatever the input.
    pub line_bytes_max: usize,
    /// Return blank lines (empty or only ASCII whitespace) as lines instead of skipping them
    /// (default false). A ledger reader keeps them so that every line of the input is
    /// accounted for: a blank line is then rejected by the parser like any non-JSON line.
    pub keep_blank_lines: bool,
    /// Return the complete lines read so far as soon as a read comes back short (the input
    /// had no more bytes ready), instead of waiting for a full batch (default false). For a
    /// live pipe (`generate --rate ... | produce --input -`): each line goes on as soon as it
    /// arrives. A file's reads come back full but at its end, so it is read in full batches
    /// either way.
    pub eager: bool,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            batch_bytes: default_batch_bytes(),
            line_bytes_max: default_line_bytes_max(),
            keep_blank_lines: false,
            eager: false,
        }
    }
}

/// Where one line is in its batch's buffer, and which line of the input it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    /// Index of the line's first byte in [`LineBatch::buffer`].
    pub start: usize,
    /// Index one past the line's last byte in [`LineBatch::buffer`]; the line end (`\n`
    /// or `\r\n`) is not part of the line.
    pub end: usize,
    /// 1-based number of the line in the input, blank lines included.
    pub number: u64,
    /// `Some(full length in bytes)`, line end excluded, when the line was longer than
    /// [`ReaderOptions::line_bytes_max`] and only its first `line_bytes_max` bytes were
    /// kept; `None` when the line is whole.
    pub truncated_from: Option<u64>,
}

/// A batch of lines: one buffer holding their bytes and an index of where each line is.
///
/// The buffer also holds what lies between the lines (line ends, blank lines, and possibly
/// bytes of earlier batches before the first line), so read the lines through
/// [`LineBatch::line`] or [`LineBatch::iter`], not by splitting the buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineBatch {
    /// The bytes the lines point into.
    pub buffer: Vec<u8>,
    /// The lines in input order; never empty in a batch returned by [`JsonlReader`].
    pub lines: Vec<LineRef>,
}

impl LineBatch {
    /// Returns the bytes of line `index` of the batch (not its line number), without its
    /// line end.
    ///
    /// # Panics
    ///
    /// Panics if `index >= self.len()`, or if the line lies outside the buffer (which a
    /// batch made by [`JsonlReader`] never does).
    pub fn line(&self, index: usize) -> &[u8] {
        let line = &self.lines[index];
        &self.buffer[line.start..line.end]
    }

    /// Returns the number of lines in the batch.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Returns whether the batch has no line (never true of a batch from [`JsonlReader`]).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Returns an iterator over the lines of the batch, with where each one is.
    pub fn iter(&self) -> impl Iterator<Item = (&LineRef, &[u8])> + '_ {
        self.lines
            .iter()
            .map(|line| (line, &self.buffer[line.start..line.end]))
    }
}

/// Cuts a byte stream into batches of JSONL lines, in bounded memory.
///
/// The reader does its own buffering: give it the raw `File` or `Stdin`, not a
/// `BufReader`, which would only add a copy.
///
/// ```
/// use marginstream_consumer::{JsonlReader, ReaderOptions};
///
/// let input: &[u8] = b"{\"a\":1}\r\n\n  \n{\"b\":2}";
/// let mut reader = JsonlReader::new(input, ReaderOptions::default());
/// let batch = reader.next_batch().unwrap().expect("two lines");
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.line(0), b"{\"a\":1}");
/// assert_eq!((batch.lines[1].number, batch.line(1)), (4, &b"{\"b\":2}"[..]));
/// assert!(reader.next_batch().unwrap().is_none());
/// assert_eq!((reader.lines_read(), reader.bytes_read()), (4, 20));
/// ```
pub struct JsonlReader<R: Read> {
    /// The byte stream.
    input: R,
    /// The options as given.
    options: ReaderOptions,
    /// Bytes asked of the input in one read at most.
    read_bytes_max: usize,
    /// Bytes asked of the input in one read at least (if that much space is left).
    read_bytes_min: usize,
    /// The most `buffer.len()` ever gets: the batch target, plus one line, plus one read.
    buffer_bytes_max: usize,
    /// The length of a fresh buffer: the batch target plus one read.
    buffer_bytes_initial: usize,
    /// The buffer of the batch in progress. Its length is how much of it is initialized
    /// (zeroed or read), not how much holds data: that is `filled`.
    buffer: Vec<u8>,
    /// Where the batch in progress starts in `buffer`.
    base: usize,
    /// Where the line in progress starts in `buffer`; every byte before it is scanned.
    line_start: usize,
    /// Where the data read from the input ends in `buffer`.
    filled: usize,
    /// Bytes of the line in progress that were dropped because it grew past
    /// `line_bytes_max`; its first `line_bytes_max` bytes stay at `line_start`.
    line_dropped_bytes: u64,
    /// The last byte dropped from the line in progress (meaningful when bytes were dropped),
    /// to tell whether the line ended with `\r\n`.
    line_dropped_last: u8,
    /// Whether every byte dropped from the line in progress is ASCII whitespace, to tell
    /// whether the whole line is blank.
    line_dropped_blank: bool,
    /// The lines of the batch in progress, with starts and ends in `buffer`.
    lines: Vec<LineRef>,
    /// Lines in the last batch, to size the next index at once.
    lines_per_batch: usize,
    /// Bytes read from the input so far.
    bytes_read: u64,
    /// Lines completed so far, blank ones included: the number of the last line.
    lines_read: u64,
    /// Whether the input has ended and the last batch is out.
    finished: bool,
    /// The last read returned fewer bytes than asked (see [`ReaderOptions::eager`]).
    last_read_short: bool,
    /// A consumed batch's buffers, given back by [`JsonlReader::recycle`] for the next cut.
    spare: Option<(Vec<u8>, Vec<LineRef>)>,
}

impl<R: Read> JsonlReader<R> {
    /// Returns a reader of `input` that reads it in chunks of up to [`READ_CHUNK_BYTES`].
    /// Nothing is read or allocated until the first [`next_batch`](Self::next_batch).
    pub fn new(input: R, options: ReaderOptions) -> Self {
        Self::with_read_bytes(input, options, READ_CHUNK_BYTES)
    }

    /// Returns a reader that asks at most `read_bytes_max` bytes of the input per read
    /// (tests use tiny reads to put chunk boundaries everywhere).
    fn with_read_bytes(input: R, options: ReaderOptions, read_bytes_max: usize) -> Self {
        let read_bytes_max = read_bytes_max.max(1);
        let buffer_bytes_max = options
            .batch_bytes
            .saturating_add(options.line_bytes_max)
            .saturating_add(read_bytes_max);
        Self {
            input,
            options,
            read_bytes_max,
            read_bytes_min: READ_CHUNK_BYTES_MIN.min(read_bytes_max),
            buffer_bytes_max,
            buffer_bytes_initial: options
                .batch_bytes
                .saturating_add(read_bytes_max)
                .min(buffer_bytes_max),
            buffer: Vec::new(),
            base: 0,
            line_start: 0,
            filled: 0,
            line_dropped_bytes: 0,
            line_dropped_last: 0,
            line_dropped_blank: true,
            lines: Vec::new(),
            lines_per_batch: 0,
            bytes_read: 0,
            lines_read: 0,
            finished: false,
            last_read_short: false,
            spare: None,
        }
    }

    /// Returns the next batch, or `None` at the end of input. Never returns an empty batch.
    ///
    /// A batch holds the lines up to the first line end at which its size reaches
    /// [`ReaderOptions::batch_bytes`], or up to the end of input. Blank lines are skipped,
    /// so an input of blank lines only gives no batch at all.
    ///
    /// # Errors
    ///
    /// Returns [`ConsumerError::Read`] when a read fails with another kind than
    /// `Interrupted` (which is retried). The reader stays consistent: calling again retries
    /// the read, and the lines of the batch in progress are kept.
    pub fn next_batch(&mut self) -> Result<Option<LineBatch>, ConsumerError> {
        if self.finished {
            return Ok(None);
        }
        // On entry no line end lies before `line_start` that is not handled: the reader is
        // fresh, or the last call returned right at a line end, or a read failed (and the
        // line in progress is scanned again, which finds nothing).
        let mut scan = self.line_start;
        loop {
            while let Some(offset) = find_line_end(&self.buffer[scan..self.filled]) {
                let end = scan + offset;
                self.finish_line(end);
                scan = end + 1;
                self.line_start = scan;
                if self.lines.is_empty() {
                    // Only blank lines so far: the batch starts after them.
                    self.base = scan;
                } else if self.batch_size(scan) >= self.options.batch_bytes {
                    return Ok(Some(self.cut(scan)));
                }
            }
            self.drop_over_long_tail();
            if self.options.eager && self.last_read_short && !self.lines.is_empty() {
                // The input has nothing more ready: hand over what is complete.
                return Ok(Some(self.cut(self.line_start)));
            }
            // Only the bytes about to be read need scanning. Kept relative to the line in
            // progress, which `fill` may move to the front of the buffer.
            let scanned = self.filled - self.line_start;
            if self.fill()? == 0 {
                self.finished = true;
                if self.filled > self.line_start || self.line_dropped_bytes > 0 {
                    // The last line has no line end.
                    self.finish_line(self.filled);
                    self.line_start = self.filled;
                }
                if self.lines.is_empty() {
                    self.buffer = Vec::new();
                    return Ok(None);
                }
                return Ok(Some(self.cut(self.filled)));
            }
            scan = self.line_start + scanned;
        }
    }

    /// Gives back a consumed batch so that its buffers serve a later batch instead of fresh
    /// memory. Optional; a batch not given back is simply dropped.
    pub fn recycle(&mut self, batch: LineBatch) {
        if self.spare.is_none() && batch.buffer.capacity() <= self.buffer_bytes_max {
            self.spare = Some((batch.buffer, batch.lines));
        }
    }

    /// Returns the input being read, e.g. to ask a wrapper how far it got.
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// Takes back the buffers given by [`recycle`](Self::recycle) and not used yet, so that
    /// the reader of the next file can use them.
    pub(crate) fn take_spare(&mut self) -> Option<LineBatch> {
        self.spare
            .take()
            .map(|(buffer, lines)| LineBatch { buffer, lines })
    }

    /// Returns the bytes consumed from the input so far (for progress bars).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Returns the lines seen so far, blank ones included.
    pub fn lines_read(&self) -> u64 {
        self.lines_read
    }

    /// Returns the size of the batch in progress if it were cut at `end`, as
    /// [`ReaderOptions::batch_bytes`] defines it.
    fn batch_size(&self, end: usize) -> usize {
        (end - self.base).saturating_add(self.lines.len().saturating_mul(LINE_REF_BYTES))
    }

    /// Completes the line in progress, which ends at `end` in the buffer (at its `\n`, or at
    /// the end of input), and adds it to the batch unless it is blank.
    fn finish_line(&mut self, end: usize) {
        self.lines_read += 1;
        let start = self.line_start;
        let held = end - start;
        let max = self.options.line_bytes_max;
        let dropped = mem::take(&mut self.line_dropped_bytes);
        let dropped_blank = mem::replace(&mut self.line_dropped_blank, true);
        debug_assert!(
            dropped == 0 || held >= max,
            "a line loses bytes only past its cap"
        );
        if dropped_blank && self.buffer[start..end].iter().all(u8::is_ascii_whitespace) {
            if !self.options.keep_blank_lines {
                return;
            }
            if held == 0 {
                // An empty line: nothing of it is in the buffer.
                self.lines.push(LineRef {
                    start,
                    end: start,
                    number: self.lines_read,
                    truncated_from: None,
                });
                return;
            }
        }
        // The last byte of the line is in the buffer unless the line's tail was dropped and
        // nothing of it was read since. A line that is not blank is not empty, so when
        // nothing was dropped its last byte is at `end - 1`.
        let last = if dropped > 0 && held == max {
            self.line_dropped_last
        } else {
            self.buffer[end - 1]
        };
        let length = held as u64 + dropped - u64::from(last == b'\r');
        let line = if length <= max as u64 {
            // Whole: every byte of it is in the buffer.
            LineRef {
                start,
                end: start + length as usize,
                number: self.lines_read,
                truncated_from: None,
            }
        } else {
            LineRef {
                start,
                end: start + max,
                number: self.lines_read,
                truncated_from: Some(length),
            }
        };
        debug_assert!(line.end <= end, "a line lies within the bytes read");
        self.lines.push(line);
    }

    /// Drops the bytes of the line in progress past `line_bytes_max`, remembering only how
    /// many there were, the last one and whether all were blank: this is what keeps memory
    /// bounded on a line of any length. Called when the buffer holds no line end after
    /// `line_start`.
    fn drop_over_long_tail(&mut self) {
        let keep_end = self.line_start.saturating_add(self.options.line_bytes_max);
        if self.filled <= keep_end {
            return;
        }
        let dropped = &self.buffer[keep_end..self.filled];
        self.line_dropped_bytes += dropped.len() as u64;
        self.line_dropped_last = dropped[dropped.len() - 1];
        if self.line_dropped_blank {
            self.line_dropped_blank = dropped.iter().all(u8::is_ascii_whitespace);
        }
        self.filled = keep_end;
    }

    /// Reads the next chunk of input after `filled`, making room first, and returns how
    /// many bytes came (0 at the end of input). Retries interrupted reads.
    fn fill(&mut self) -> Result<usize, ConsumerError> {
        // Ask for what the batch still lacks, within the bounds of one read, so that little
        // is read past the cut.
        let lacking = self
            .options
            .batch_bytes
            .saturating_sub(self.batch_size(self.filled));
        let want = lacking.clamp(self.read_bytes_min, self.read_bytes_max);
        if self.buffer.len() - self.filled < want && self.base > 0 {
            self.compact();
        }
        if self.buffer.len() - self.filled < want {
            let length = self
                .buffer
                .len()
                .saturating_mul(2)
                .max(self.buffer_bytes_initial)
                .max(self.filled + want)
                .min(self.buffer_bytes_max);
            // `resize` alone may double the capacity: reserve exactly to keep the bound.
            self.buffer.reserve_exact(length - self.buffer.len());
            self.buffer.resize(length, 0);
        }
        // The batch in progress is below its target and its line in progress within its
        // cap, so one more read always fits under `buffer_bytes_max`.
        let end = self.buffer.len().min(self.filled + want);
        debug_assert!(end > self.filled, "there is room to read into");
        debug_assert!(self.buffer.capacity() <= self.buffer_bytes_max);
        loop {
            match self.input.read(&mut self.buffer[self.filled..end]) {
                Ok(count) => {
                    debug_assert!(
                        count <= end - self.filled,
                        "Read::read returns at most the slice length"
                    );
                    let count = count.min(end - self.filled);
                    self.last_read_short = count < end - self.filled;
                    self.filled += count;
                    self.bytes_read += count as u64;
                    return Ok(count);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ConsumerError::Read {
                        offset: self.bytes_read,
                        source,
                    })
                }
            }
        }
    }

    /// Moves the batch in progress to the front of the buffer, dropping the bytes before
    /// `base`.
    fn compact(&mut self) {
        let base = self.base;
        self.buffer.copy_within(base..self.filled, 0);
        self.filled -= base;
        self.line_start -= base;
        for line in &mut self.lines {
            line.start -= base;
            line.end -= base;
        }
        self.base = 0;
    }

    /// Takes the lines of the batch in progress, which ends at `end` in the buffer, as a
    /// batch, and leaves the bytes after `end` as the start of the next one.
    fn cut(&mut self, end: usize) -> LineBatch {
        debug_assert!(!self.lines.is_empty(), "a batch is never empty");
        debug_assert_eq!(end, self.line_start, "a batch ends at a line end");
        self.lines_per_batch = self.lines.len();
        let spare = self.spare.take();
        let (spare_buffer, spare_lines) = match spare {
            Some((buffer, lines)) => (Some(buffer), Some(lines)),
            None => (None, None),
        };
        let next_lines = if self.finished {
            Vec::new()
        } else {
            match spare_lines {
                Some(mut lines) => {
                    lines.clear();
                    lines
                }
                None => Vec::with_capacity(self.lines_per_batch),
            }
        };
        let mut lines = mem::replace(&mut self.lines, next_lines);
        let rest = self.filled - end;
        if rest <= end - self.base {
            // Usual case: hand the buffer over and copy the few bytes read past the cut
            // into a fresh one.
            let next = if self.finished {
                Vec::new()
            } else {
                let length = self.buffer_bytes_initial.max(rest);
                let mut next = match spare_buffer {
                    // A recycled buffer's pages are already mapped: reusing it spares the
                    // page faults of fresh memory on every batch.
                    Some(mut buffer) if buffer.capacity() >= length => {
                        buffer.resize(length, 0);
                        buffer
                    }
                    _ => vec![0; length],
                };
                next[..rest].copy_from_slice(&self.buffer[end..self.filled]);
                next
            };
            let mut buffer = mem::replace(&mut self.buffer, next);
            buffer.truncate(end);
            self.base = 0;
            self.line_start = 0;
            self.filled = rest;
            LineBatch { buffer, lines }
        } else {
            // A small batch (tiny `batch_bytes`, or lines longer than a batch): copy it out
            // and keep the buffer, rather than copying the larger rest.
            let buffer = self.buffer[self.base..end].to_vec();
            for line in &mut lines {
                line.start -= self.base;
                line.end -= self.base;
            }
            self.base = end;
            LineBatch { buffer, lines }
        }
    }
}

impl<R: Read> fmt::Debug for JsonlReader<R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("JsonlReader")
            .field("options", &self.options)
            .field("bytes_read", &self.bytes_read)
            .field("lines_read", &self.lines_read)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Returns the index of the first `\n` in `haystack`.
///
/// Tests 32-byte blocks with a compare-and-or loop that the compiler turns into vector
/// instructions (SSE2 on any x86-64, NEON on aarch64), then finds the byte in the one block
/// that has it with word-at-a-time arithmetic. About 15 GB/s on ~150-byte lines, seven times
/// a byte loop; std's own `memchr` is not public, and the crate takes no dependency for it.
fn find_line_end(haystack: &[u8]) -> Option<usize> {
    const BLOCK_BYTES: usize = 32;
    let mut blocks = haystack.chunks_exact(BLOCK_BYTES);
    let mut offset = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &byte| any | (byte == b'\n')) {
            for (index, word) in block.chunks_exact(8).enumerate() {
                let word: [u8; 8] = word.try_into().expect("chunks_exact(8) yields 8 bytes");
                let zeros = zero_bytes(u64::from_le_bytes(word) ^ LINE_FEEDS);
                if zeros != 0 {
                    return Some(offset + index * 8 + (zeros.trailing_zeros() / 8) as usize);
                }
            }
            debug_assert!(
                false,
                "the block that has a line end has a word that has it"
            );
        }
        offset += BLOCK_BYTES;
    }
    blocks
        .remainder()
        .iter()
        .position(|&byte| byte == b'\n')
        .map(|index| offset + index)
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_le_bytes([1; 8]);

/// `\n` in every byte of a word.
const LINE_FEEDS: u64 = u64::from_le_bytes([b'\n'; 8]);

/// Returns `word` with the high bit of its lowest zero byte set, and possibly of higher
/// bytes (a borrow can mark the byte above a zero one), but of no byte below it: so the
/// trailing zeros of the result, divided by 8, are the index of the first zero byte in
/// little-endian order, and the result is 0 iff no byte is zero. From "Bit Twiddling
/// Hacks", "Determine if a word has a zero byte".
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & (ONES << 7)
}

#[cfg(test)]
mod tests {
    use std::io;

    use proptest::prelude::*;

    use super::*;

    /// A line as the tests compare them: number, bytes, full length if truncated.
    type Line = (u64, Vec<u8>, Option<u64>);

    /// A reader that returns 1 to 7 bytes per read (fewer at the end), and with
    /// `interrupt` fails about one read in five with `Interrupted`.
    struct ShortReads<'a> {
        data: &'a [u8],
        position: usize,
        state: u64,
        interrupt: bool,
    }

    impl<'a> ShortReads<'a> {
        fn new(data: &'a [u8], seed: u64, interrupt: bool) -> Self {
            Self {
                data,
                position: 0,
                state: seed,
                interrupt,
            }
        }
    }

    impl Read for ShortReads<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            // A 64-bit LCG (Knuth's MMIX constants): deterministic, good enough for sizes.
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let random = (self.state >> 33) as usize;
            if self.interrupt && random % 5 == 1 {
                return Err(io::Error::from(ErrorKind::Interrupted));
            }
            let count = (1 + random % 7)
                .min(out.len())
                .min(self.data.len() - self.position);
            out[..count].copy_from_slice(&self.data[self.position..self.position + count]);
            self.position += count;
            Ok(count)
        }
    }

    /// The rules of the module, the naive way: split on `\n`, strip one trailing `\r`,
    /// skip blank lines, truncate long ones. Returns the lines and the number of lines.
    fn reference(input: &[u8], line_bytes_max: usize) -> (Vec<Line>, u64) {
        let mut pieces: Vec<&[u8]> = input.split(|&byte| byte == b'\n').collect();
        if pieces.last().is_some_and(|piece| piece.is_empty()) {
            // After a final line end (or in an empty input) there is no line.
            pieces.pop();
        }
        let mut lines = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            let content = piece.strip_suffix(b"\r").unwrap_or(piece);
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let number = index as u64 + 1;
            if content.len() > line_bytes_max {
                let kept = content[..line_bytes_max].to_vec();
                lines.push((number, kept, Some(content.len() as u64)));
            } else {
                lines.push((number, content.to_vec(), None));
            }
        }
        (lines, pieces.len() as u64)
    }

    /// Reads every batch, checking what must hold of each, and returns the lines and the
    /// number of batches.
    fn read_all<R: Read>(reader: &mut JsonlReader<R>) -> (Vec<Line>, usize) {
        let bound = reader.buffer_bytes_max;
        let mut lines = Vec::new();
        let mut batches = 0;
        while let Some(batch) = reader
            .next_batch()
            .expect("test readers fail only on purpose")
        {
            batches += 1;
            assert!(!batch.is_empty(), "a batch is never empty");
            assert_eq!(batch.len(), batch.lines.len());
            assert!(
                batch.buffer.capacity() <= bound,
                "a batch stays within the memory bound"
            );
            assert!(
                reader.buffer.capacity() <= bound,
                "the reader stays within the bound"
            );
            for (line, bytes) in batch.iter() {
                assert!(line.start <= line.end && line.end <= batch.buffer.len());
                lines.push((line.number, bytes.to_vec(), line.truncated_from));
            }
        }
        assert!(
            reader.next_batch().unwrap().is_none(),
            "the end stays the end"
        );
        (lines, batches)
    }

    /// Returns the options with the given batch size and line cap.
    fn options(batch_bytes: usize, line_bytes_max: usize) -> ReaderOptions {
        ReaderOptions {
            batch_bytes,
            line_bytes_max,
            ..ReaderOptions::default()
        }
    }

    /// Reads `input` whole with default options and one large read.
    fn lines_of(input: &[u8]) -> Vec<Line> {
        let mut reader = JsonlReader::new(input, ReaderOptions::default());
        read_all(&mut reader).0
    }

    /// Builds a line record for assertions.
    fn line(number: u64, bytes: &[u8]) -> Line {
        (number, bytes.to_vec(), None)
    }

    /// Lines come out whole and numbered whatever the batch size, the read size and the
    /// number of bytes each read returns: chunk boundaries fall inside lines, inside
    /// `\r\n` pairs and right at line ends.
    #[test]
    fn splits_across_chunk_boundaries_with_short_reads() {
        let mut input = Vec::new();
        for number in 0..200u32 {
            let padding = "x".repeat((number as usize * 7) % 53);
            let end = if number % 3 == 0 { "\r\n" } else { "\n" };
            input.extend_from_slice(
                format!("{{\"n\":{number},\"p\":\"{padding}\"}}{end}").as_bytes(),
            );
            if number % 17 == 0 {
                input.extend_from_slice(b" \t\n");
            }
        }
        let (expected, lines_expected) = reference(&input, usize::MAX);
        for batch_bytes in [0, 1, 7, 50, 200, 4096, 1 << 20] {
            for read_bytes in [1, 3, 16, 100, READ_CHUNK_BYTES] {
                for seed in 0..3 {
                    let source = ShortReads::new(&input, seed, seed == 2);
                    let mut reader = JsonlReader::with_read_bytes(
                        source,
                        options(batch_bytes, 1 << 20),
                        read_bytes,
                    );
                    let (lines, batches) = read_all(&mut reader);
                    assert_eq!(
                        lines, expected,
                        "batch_bytes {batch_bytes}, read_bytes {read_bytes}"
                    );
                    assert_eq!(reader.lines_read(), lines_expected);
                    assert_eq!(reader.bytes_read(), input.len() as u64);
                    if batch_bytes <= 1 {
                        assert_eq!(batches, expected.len(), "a batch per line");
                    }
                    if batch_bytes >= 1 << 20 {
                        assert_eq!(batches, 1, "one batch for a small input");
                    }
                }
            }
        }
    }

    /// A batch is cut at the first line end at which its size (bytes consumed plus 40 per
    /// line) reaches `batch_bytes`.
    #[test]
    fn cuts_batch_at_first_line_end_after_target() {
        assert_eq!(LINE_REF_BYTES, 40);
        // Each line consumes 10 bytes and costs 50.
        let input = b"123456789\n".repeat(10);
        let mut reader = JsonlReader::new(&input[..], options(120, 100));
        let sizes: Vec<usize> = std::iter::from_fn(|| reader.next_batch().unwrap())
            .map(|batch| batch.len())
            .collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
    }

    /// `\r\n` line ends lose their `\r`; a `\r` elsewhere is content.
    #[test]
    fn strips_carriage_return_before_line_end() {
        let lines = lines_of(b"{\"a\":1}\r\n{\"b\":\r2}\n{\"c\":3}\r\r\n\r\n{\"d\":4}\r");
        assert_eq!(
            lines,
            [
                line(1, b"{\"a\":1}"),
                line(2, b"{\"b\":\r2}"),
                line(3, b"{\"c\":3}\r"),
                line(5, b"{\"d\":4}"),
            ]
        );
    }

    /// Empty and whitespace-only lines are not returned but still take a line number.
    #[test]
    fn skips_blank_lines_but_numbers_them() {
        let mut reader = JsonlReader::new(
            &b"\n \t\n{}\n\x0c\r\n\n[1]\n\n"[..],
            ReaderOptions::default(),
        );
        let (lines, batches) = read_all(&mut reader);
        assert_eq!(lines, [line(3, b"{}"), line(6, b"[1]")]);
        assert_eq!((batches, reader.lines_read()), (1, 7));
    }

    /// With `eager`, a short read (a live pipe with nothing more ready) hands over the lines
    /// complete so far at once, and the line in progress waits for its end; without it, the
    /// reader waits for a full batch.
    #[test]
    fn eager_hands_over_lines_at_a_short_read() {
        /// Returns one chunk per read, each shorter than asked.
        struct Trickle(Vec<&'static [u8]>);
        impl std::io::Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let chunks = vec![
            &b"{\"a\":1}\n{\"b\""[..],
            &b":2}\n"[..],
            &b"{\"c\":3}\n"[..],
        ];
        let eager = ReaderOptions {
            eager: true,
            ..ReaderOptions::default()
        };
        let mut reader = JsonlReader::new(Trickle(chunks.clone()), eager);
        let mut batches = Vec::new();
        while let Some(batch) = reader.next_batch().expect("in-memory reads succeed") {
            batches.push(batch.lines.len());
        }
        assert_eq!(batches, [1, 1, 1], "one batch per short read");
        let mut reader = JsonlReader::new(Trickle(chunks), ReaderOptions::default());
        let (lines, batches) = read_all(&mut reader);
        assert_eq!(
            (lines.len(), batches),
            (3, 1),
            "one full batch without eager"
        );
    }

    /// With `keep_blank_lines`, blank lines come back as lines (empty, or their whitespace),
    /// so a ledger reader can account for every line.
    #[test]
    fn keeps_blank_lines_when_asked() {
        let options = ReaderOptions {
            keep_blank_lines: true,
            ..ReaderOptions::default()
        };
        let mut reader = JsonlReader::new(&b"\n \t\n{}\n\r\n[1]\n"[..], options);
        let (lines, _) = read_all(&mut reader);
        assert_eq!(
            lines,
            [
                line(1, b""),
                line(2, b" \t"),
                line(3, b"{}"),
                line(4, b""),
                line(5, b"[1]")
            ]
        );
    }

    /// A recycled batch's buffers serve the next batch, and the lines stay intact.
    #[test]
    fn recycled_batches_keep_lines_intact() {
        let input: Vec<u8> = (0..2_000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let mut reader = JsonlReader::new(&input[..], options(256, 1 << 10));
        let mut numbers = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            for (line, bytes) in batch.iter() {
                assert_eq!(bytes, format!("{{\"n\":{}}}", line.number - 1).as_bytes());
                numbers.push(line.number);
            }
            reader.recycle(batch);
        }
        assert_eq!(numbers, (1..=2_000).collect::<Vec<u64>>());
    }

    /// An empty input, and one of blank lines only, give no batch at all.
    #[test]
    fn returns_no_batch_without_content() {
        assert_eq!(lines_of(b""), []);
        let mut reader = JsonlReader::new(&b"\n\r\n   \n\t"[..], ReaderOptions::default());
        assert_eq!(read_all(&mut reader), (vec![], 0));
        assert_eq!((reader.lines_read(), reader.bytes_read()), (4, 8));
    }

    /// The last line counts even without a line end, with or without a `\r`.
    #[test]
    fn returns_last_line_without_line_end() {
        assert_eq!(
            lines_of(b"{}\n{\"last\":true}"),
            [line(1, b"{}"), line(2, b"{\"last\":true}")]
        );
        assert_eq!(lines_of(b"{}\r"), [line(1, b"{}")]);
        assert_eq!(lines_of(b"x"), [line(1, b"x")]);
    }

    /// Bytes pass unchanged, invalid UTF-8 and NUL included: rejecting them is the parser's
    /// job.
    #[test]
    fn passes_invalid_utf8_unchanged() {
        let lines = lines_of(b"\xff\xfe{\"a\":\"\x00\xc3\x28\"}\n\xe2\x82\n");
        assert_eq!(
            lines,
            [
                line(1, b"\xff\xfe{\"a\":\"\x00\xc3\x28\"}"),
                line(2, b"\xe2\x82")
            ]
        );
    }

    /// A line over the cap keeps its first `line_bytes_max` bytes and its full length, and
    /// the lines after it are intact, whether the line ends within one read or spans many.
    #[test]
    fn truncates_over_long_line_and_keeps_following_lines() {
        let long = [b'a'; 5000];
        let mut input = b"{\"first\":1}\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\r\n{\"after\":2}\n");
        input.extend_from_slice(&long[..101]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&long[..100]);
        input.extend_from_slice(b"\r\n{\"z\":3}");
        let expected = vec![
            line(1, b"{\"first\":1}"),
            (2, long[..100].to_vec(), Some(5000)),
            line(3, b"{\"after\":2}"),
            (4, long[..100].to_vec(), Some(101)),
            line(5, &long[..100]),
            line(6, b"{\"z\":3}"),
        ];
        assert_eq!(reference(&input, 100).0, expected);
        for read_bytes in [7, 64, 1000, READ_CHUNK_BYTES] {
            for batch_bytes in [1, 300, 1 << 20] {
                let source = ShortReads::new(&input, 1, false);
                let mut short =
                    JsonlReader::with_read_bytes(source, options(batch_bytes, 100), read_bytes);
                assert_eq!(
                    read_all(&mut short).0,
                    expected,
                    "short reads of at most {read_bytes}"
                );
                let mut whole =
                    JsonlReader::with_read_bytes(&input[..], options(batch_bytes, 100), read_bytes);
                assert_eq!(read_all(&mut whole).0, expected, "reads of {read_bytes}");
            }
        }
    }

    /// A line of whitespace is blank however long it is, even past the cap.
    #[test]
    fn skips_over_long_blank_line() {
        let mut input = vec![b' '; 3000];
        input.extend_from_slice(b"\r\n{}\n");
        input.extend_from_slice(&[b' '; 3000]);
        input.push(b'x');
        let mut reader = JsonlReader::with_read_bytes(&input[..], options(10, 100), 64);
        let (lines, _) = read_all(&mut reader);
        assert_eq!(lines, [line(2, b"{}"), (3, vec![b' '; 100], Some(3001))]);
    }

    /// A reader of an endless line: `length` bytes of `x`, then a line end and `{}`.
    struct EndlessLine {
        length: u64,
        position: u64,
    }

    impl Read for EndlessLine {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let tail = b"\n{}\n";
            let mut count = 0;
            while count < out.len() && self.position < self.length + tail.len() as u64 {
                out[count] = match self.position.checked_sub(self.length) {
                    None => b'x',
                    Some(index) => tail[index as usize],
                };
                count += 1;
                self.position += 1;
            }
            Ok(count)
        }
    }

    /// Memory stays bounded on a line far longer than every limit: a 64 MiB line with a
    /// 1 KiB cap never makes a buffer larger than batch + cap + one read.
    #[test]
    fn keeps_memory_bounded_on_endless_line() {
        let length = 64 << 20;
        let source = EndlessLine {
            length,
            position: 0,
        };
        let mut reader = JsonlReader::new(source, options(4096, 1024));
        let batch = reader.next_batch().unwrap().expect("the long line");
        assert!(batch.buffer.capacity() <= 4096 + 1024 + READ_CHUNK_BYTES);
        assert_eq!(batch.lines[0].truncated_from, Some(length));
        assert_eq!(batch.line(0), &[b'x'; 1024][..]);
        assert_eq!((batch.lines[1].number, batch.line(1)), (2, &b"{}"[..]));
        assert_eq!(batch.len(), 2);
        assert!(reader.next_batch().unwrap().is_none());
        assert_eq!(reader.bytes_read(), length + 4);
    }

    /// A reader that fails once with a non-retryable error after `fail_at` bytes.
    struct FailsOnce<'a> {
        data: &'a [u8],
        position: usize,
        fail_at: usize,
        failed: bool,
    }

    impl Read for FailsOnce<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.position == self.fail_at && !self.failed {
                self.failed = true;
                return Err(io::Error::new(ErrorKind::TimedOut, "slow disk"));
            }
            let end = if self.position < self.fail_at {
                self.fail_at
            } else {
                self.data.len()
            };
            let count = out.len().min(end - self.position);
            out[..count].copy_from_slice(&self.data[self.position..self.position + count]);
            self.position += count;
            Ok(count)
        }
    }

    /// A failed read is reported with its offset, and calling again resumes where the input
    /// stopped, losing no line, not even one cut in two by the failure.
    #[test]
    fn resumes_after_failed_read() {
        let input = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
        let source = FailsOnce {
            data: input,
            position: 0,
            fail_at: 12,
            failed: false,
        };
        let mut reader = JsonlReader::new(source, options(1 << 20, 100));
        let error = reader.next_batch().expect_err("the read fails");
        assert_eq!(error.to_string(), "failed to read the input after 12 bytes");
        let ConsumerError::Read { offset, source } = &error else {
            panic!("a failed read is a read error, got {error}");
        };
        assert_eq!((*offset, source.kind()), (12, ErrorKind::TimedOut));
        let (lines, batches) = read_all(&mut reader);
        assert_eq!(batches, 1);
        assert_eq!(
            lines,
            [
                line(1, b"{\"a\":1}"),
                line(2, b"{\"b\":2}"),
                line(3, b"{\"c\":3}")
            ]
        );
    }

    /// `Interrupted` reads are retried, not reported.
    #[test]
    fn retries_interrupted_reads() {
        let input = b"{\"a\":1}\n{\"b\":2}\n".repeat(50);
        let source = ShortReads::new(&input, 7, true);
        let mut reader = JsonlReader::new(source, options(64, 100));
        assert_eq!(read_all(&mut reader).0, reference(&input, 100).0);
    }

    /// Bytes more likely to hit the edge cases than uniform ones.
    fn edgy_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => Just(b'\n'),
            2 => Just(b'\r'),
            2 => Just(b' '),
            1 => Just(b'\t'),
            3 => Just(b'x'),
            3 => any::<u8>(),
        ]
    }

    proptest! {
        /// For any bytes, any tiny batch size, line cap and read size, and reads of 1 to 7
        /// bytes, the reader returns exactly the lines of the naive reference, with their
        /// numbers and truncation, counts every line and byte, never returns an empty batch,
        /// stays within its memory bound and never panics.
        #[test]
        fn matches_naive_split(
            input in prop::collection::vec(edgy_byte(), 0..600),
            batch_bytes in 0usize..200,
            line_bytes_max in 0usize..24,
            read_bytes in 1usize..40,
            seed in any::<u64>(),
            interrupt in any::<bool>(),
        ) {
            let (expected, lines_expected) = reference(&input, line_bytes_max);
            let source = ShortReads::new(&input, seed, interrupt);
            let mut reader = JsonlReader::with_read_bytes(source, options(batch_bytes, line_bytes_max), read_bytes);
            let (lines, _) = read_all(&mut reader);
            prop_assert_eq!(lines, expected);
            prop_assert_eq!(reader.lines_read(), lines_expected);
            prop_assert_eq!(reader.bytes_read(), input.len() as u64);
        }

        /// The block search finds the same first line end as a byte loop, wherever it lies
        /// in a block and whatever bytes (0x0a ± 1, 0x8a, 0xff...) surround it.
        #[test]
        fn find_line_end_matches_position(haystack in prop::collection::vec(prop_oneof![edgy_byte(), 0x09u8..0x0c, Just(0x8a)], 0..200)) {
            prop_assert_eq!(
                find_line_end(&haystack),
                haystack.iter().position(|&byte| byte == b'\n')
            );
        }
    }
}
