//! The history's spool: rows of raw figures on disk, in sorted runs merged with a bounded
//! fan-in, read back series by series.
//!
//! The history arrives time-major (every customer at one step, then every customer at the
//! next) and OpenMetrics wants it series-major (one series' samples together, in time order).
//! That is a transposition, done here as an external merge sort on `(key, stamp)`:
//!
//! - Each step is written as one *run* by a [`RunWriter`]: its rows in ascending key order
//!   (customer ids, as the view presents them), each with the step's stamp and a payload of
//!   raw figures. A run is already sorted by `(key, stamp)`.
//! - [`merge`] merges consecutive runs, at most [`SpoolLimits::fan_in`] at a time, into longer
//!   runs, level after level, until at most `fan_in` runs are left.
//! - A [`SeriesReader`] over those runs presents the keys in ascending order and, for each,
//!   its entries in time order (run after run), as often as asked: the renderer walks one
//!   key's entries once per window, cost function and family.
//!
//! # Layout
//!
//! A level is a data file of runs laid end to end and an index file of one record per run:
//! its start offset in the data file and its base stamp, 16 bytes. A run is a sequence of
//! entries in strictly ascending `(key, stamp)` order:
//!
//! ```text
//! shared       varint  bytes the key shares with the previous entry's key in the run
//! suffix_len   varint  then the rest of the key
//! suffix       bytes
//! delta        varint  stamp − the run's base stamp
//! payload_len  varint
//! payload      bytes
//! ```
//!
//! Varints are LEB128. Keys are front-coded, so a key repeated over the steps of a merged run
//! costs two bytes. Decimals in payloads ([`put_decimal`]) are a header byte and the
//! mantissa as a varint: the exact value, in 2 to 5 bytes for usual amounts, 1 for zero.
//!
//! # Bounds
//!
//! Every reader holds one buffer of [`SpoolLimits::buffer_bytes`] (more only for one entry
//! larger than that), and at most `fan_in` readers are open at once, so memory stays within
//! [`SpoolLimits::buffer_bytes_max`] whatever the number of steps and keys. A merge level
//! rewrites the spool once, and the level it reads is removed when it is done, so the disk
//! holds at most two copies of the spool, which is a small fraction of the text it becomes.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

/// How much a spool may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpoolLimits {
    /// The most runs read at once, by a merge or by the final [`SeriesReader`].
    pub(crate) fan_in: usize,
    /// The buffer of one reader and of a run writer's data file.
    pub(crate) buffer_bytes: usize,
}

/// The buffer of an index file's writer and of the small tables' writers.
pub(crate) const SMALL_BUFFER_BYTES: usize = 8 << 10;

impl SpoolLimits {
    /// 64 runs of 128 KiB: a merge of 64 runs, or the final read of up to 64 runs, holds
    /// 8 MiB of buffers. With 1000 steps one merge level is enough (1000 runs become 16);
    /// beyond 4096 steps a second level is needed.
    pub(crate) const DEFAULT: SpoolLimits = SpoolLimits {
        fan_in: 64,
        buffer_bytes: 128 << 10,
    };

    /// Returns the most bytes of spool buffers held at once, entries longer than
    /// `buffer_bytes` aside: `fan_in` readers and one more (the `__other__` row's, or a
    /// merge's writer), and the small writers (indexes and per-step tables).
    pub(crate) const fn buffer_bytes_max(self, small_writers: usize) -> usize {
        (self.fan_in + 1) * self.buffer_bytes + (small_writers + 1) * SMALL_BUFFER_BYTES
    }
}

/// The largest buffers and spool seen while a history was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meter {
    /// Bytes of buffers held at once, at most.
    pub(crate) buffer_bytes_peak: usize,
    /// Bytes of spool files on disk now.
    pub(crate) disk_bytes: u64,
    /// Bytes of spool files on disk at once, at most.
    pub(crate) disk_bytes_peak: u64,
}

impl Meter {
    /// Notes `bytes` of buffers held at this moment.
    pub(crate) fn buffers(&mut self, bytes: usize) {
        self.buffer_bytes_peak = self.buffer_bytes_peak.max(bytes);
    }

    /// Notes `extra` bytes of a file being written beside the spool files counted.
    fn disk(&mut self, extra: u64) {
        self.disk_bytes_peak = self.disk_bytes_peak.max(self.disk_bytes + extra);
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the history spool is corrupt: {what}"),
    )
}

/// Appends `value` as an LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads an LEB128 varint of at most `max_bits` bits at `*pos`, and moves `*pos` past it.
fn get_varint(bytes: &[u8], pos: &mut usize, max_bits: u32) -> Option<u128> {
    let mut value = 0u128;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        if shift >= max_bits || (shift > 0 && u128::from(byte & 0x7f) >> (max_bits - shift) != 0) {
            return None;
        }
        value |= u128::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

fn get_u64(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    get_varint(bytes, pos, 64).map(|value| value as u64)
}

/// The header byte of a zero; any other header is the scale, plus [`NEGATIVE`].
const ZERO: u8 = 0xff;
const NEGATIVE: u8 = 0x20;

/// Appends a decimal: a header byte (its scale, `0x20` when negative, `0xff` for zero) and
/// its 96-bit mantissa as a varint. The value is exact; a zero's scale and sign, which no
/// rendering shows, are not kept.
pub(crate) fn put_decimal(out: &mut Vec<u8>, value: Decimal) {
    if value.is_zero() {
        out.push(ZERO);
        return;
    }
    let scale = value.scale() as u8;
    out.push(if value.is_sign_negative() {
        scale | NEGATIVE
    } else {
        scale
    });
    put_varint(out, value.mantissa().unsigned_abs());
}

/// Reads a decimal written by [`put_decimal`] at `*pos`.
pub(crate) fn get_decimal(bytes: &[u8], pos: &mut usize) -> Option<Decimal> {
    let header = *bytes.get(*pos)?;
    *pos += 1;
    if header == ZERO {
        return Some(Decimal::ZERO);
    }
    let scale = u32::from(header & !NEGATIVE);
    if scale > 28 || header & !(NEGATIVE | 0x1f) != 0 {
        return None;
    }
    let mantissa = get_varint(bytes, pos, 96)?;
    Some(Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        (mantissa >> 64) as u32,
        header & NEGATIVE != 0,
        scale,
    ))
}

/// Moves `*pos` past `count` decimals without decoding them.
pub(crate) fn skip_decimals(bytes: &[u8], pos: &mut usize, count: usize) -> Option<()> {
    for _ in 0..count {
        let header = *bytes.get(*pos)?;
        *pos += 1;
        if header != ZERO {
            while *bytes.get(*pos)? & 0x80 != 0 {
                *pos += 1;
            }
            *pos += 1;
        }
    }
    Some(())
}

/// Where one run lies in its level's data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunSpan {
    start: u64,
    end: u64,
    base: i64,
}

/// Sorted runs on disk: a data file and its index.
#[derive(Debug)]
pub(crate) struct Level {
    data: PathBuf,
    index: PathBuf,
    runs: u64,
    data_len: u64,
}

impl Level {
    /// Returns the bytes of its two files.
    pub(crate) fn bytes(&self) -> u64 {
        self.data_len + self.runs * 16
    }

    fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.data)?;
        fs::remove_file(&self.index)
    }

    /// Returns the runs' spans, in order, reading the index as they are asked for.
    fn spans(&self) -> io::Result<impl Iterator<Item = io::Result<RunSpan>> + '_> {
        let mut index = BufReader::with_capacity(SMALL_BUFFER_BYTES, File::open(&self.index)?);
        let mut read = move || -> io::Result<(u64, i64)> {
            let mut record = [0u8; 16];
            index.read_exact(&mut record)?;
            let (start, base) = record.split_at(8);
            Ok((
                u64::from_le_bytes(start.try_into().expect("8 bytes")),
                i64::from_le_bytes(base.try_into().expect("8 bytes")),
            ))
        };
        let mut next = if self.runs > 0 { Some(read()?) } else { None };
        let mut left = self.runs;
        Ok(std::iter::from_fn(move || {
            let (start, base) = next.take()?;
            left -= 1;
            let end = if left > 0 {
                match read() {
                    Ok(following) => {
                        next = Some(following);
                        following.0
                    }
                    Err(error) => return Some(Err(error)),
                }
            } else {
                self.data_len
            };
            Some(if start <= end && end <= self.data_len {
                Ok(RunSpan { start, end, base })
            } else {
                Err(corrupt("a run outside its data file"))
            })
        }))
    }
}

/// Writes runs of entries to a level's data and index files.
#[derive(Debug)]
pub(crate) struct RunWriter {
    data_path: PathBuf,
    index_path: PathBuf,
    data: BufWriter<File>,
    index: BufWriter<File>,
    /// Bytes written to the data file.
    written: u64,
    runs: u64,
    /// The open run's base stamp, while a run is open.
    base: Option<i64>,
    /// The open run's last entry, unless it has none yet (`fresh`).
    last_key: Vec<u8>,
    last_stamp: i64,
    fresh: bool,
    head: Vec<u8>,
}

impl RunWriter {
    /// Creates (truncates) the two files; `buffer_bytes` is the data file's write buffer.
    pub(crate) fn create(dir: &Path, name: &str, buffer_bytes: usize) -> io::Result<RunWriter> {
        let data_path = dir.join(format!("{name}.data"));
        let index_path = dir.join(format!("{name}.index"));
        Ok(RunWriter {
            data: BufWriter::with_capacity(buffer_bytes, File::create(&data_path)?),
            index: BufWriter::with_capacity(SMALL_BUFFER_BYTES, File::create(&index_path)?),
            data_path,
            index_path,
            written: 0,
            runs: 0,
            base: None,
            last_key: Vec::new(),
            last_stamp: 0,
            fresh: true,
            head: Vec::with_capacity(64),
        })
    }

    /// Appends an entry to the open run, opening one (based at `stamp`) if none is.
    ///
    /// # Panics
    ///
    /// Panics if `(key, stamp)` does not come strictly after the run's previous entry, or if
    /// `stamp` is before the run's base: the merge relies on both (a [`GaugeView`] presents
    /// its customers in ascending id order, and snapshots go forward in time).
    ///
    /// [`GaugeView`]: marginstream_model::GaugeView
    pub(crate) fn push(&mut self, key: &[u8], stamp: i64, payload: &[u8]) -> io::Result<()> {
        let base = match self.base {
            Some(base) => base,
            None => {
                self.start_run(stamp)?;
                stamp
            }
        };
        assert!(
            self.fresh || (self.last_key.as_slice(), self.last_stamp) < (key, stamp),
            "spooled entries come in strictly ascending (key, stamp) order"
        );
        self.fresh = false;
        let delta = u64::try_from(stamp - base).expect("a run's stamps are at or after its base");
        let shared = self
            .last_key
            .iter()
            .zip(key)
            .take_while(|(a, b)| a == b)
            .count();
        self.head.clear();
        put_varint(&mut self.head, shared as u128);
        put_varint(&mut self.head, (key.len() - shared) as u128);
        self.head.extend_from_slice(&key[shared..]);
        put_varint(&mut self.head, u128::from(delta));
        put_varint(&mut self.head, payload.len() as u128);
        self.data.write_all(&self.head)?;
        self.data.write_all(payload)?;
        self.written += (self.head.len() + payload.len()) as u64;
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.last_stamp = stamp;
        Ok(())
    }

    /// Opens a run based at `base`: its entries' stamps are at or after it.
    pub(crate) fn start_run(&mut self, base: i64) -> io::Result<()> {
        self.index.write_all(&self.written.to_le_bytes())?;
        self.index.write_all(&base.to_le_bytes())?;
        self.runs += 1;
        self.base = Some(base);
        self.last_key.clear();
        self.fresh = true;
        Ok(())
    }

    /// Closes the open run, if any: the next entry starts a new one.
    pub(crate) fn end_run(&mut self) {
        self.base = None;
    }

    /// Returns the bytes written so far, index included.
    pub(crate) fn bytes(&self) -> u64 {
        self.written + self.runs * 16
    }

    /// Returns the bytes of its buffers.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.data.capacity()
            + self.index.capacity()
            + self.head.capacity()
            + self.last_key.capacity()
    }

    /// Flushes the files and returns the level written.
    pub(crate) fn finish(self) -> io::Result<Level> {
        let RunWriter {
            data_path,
            index_path,
            data,
            index,
            written,
            runs,
            ..
        } = self;
        data.into_inner().map_err(|error| error.into_error())?;
        index.into_inner().map_err(|error| error.into_error())?;
        Ok(Level {
            data: data_path,
            index: index_path,
            runs,
            data_len: written,
        })
    }
}

/// Reads the entries of one run at a time, through a buffer of its own.
///
/// Its *current entry* is the last one decoded by [`Cursor::advance`]: key, stamp and
/// payload. A mark keeps the bytes from a given entry on in the buffer, while they fit, so
/// that [`Cursor::seek_entry`] back to it reads nothing again.
#[derive(Debug)]
struct Cursor {
    file: File,
    /// Where the file's read position is.
    file_pos: u64,
    /// Bytes of the file from `buf_offset` on; `at` is the next entry's position in it.
    buf: Vec<u8>,
    buf_offset: u64,
    at: usize,
    /// Bytes read at once.
    chunk: usize,
    /// The end of the run, and its base stamp.
    end: u64,
    base: i64,
    /// The current entry.
    key: Vec<u8>,
    /// Whether the current entry's key is the previous entry's (known from its coding, so
    /// a walk of one key's entries compares no bytes).
    same_key: bool,
    stamp: i64,
    payload: (usize, usize),
    offset: u64,
    /// No current entry: the run is read to its end.
    done: bool,
    mark: Option<u64>,
}

impl Cursor {
    fn open(path: &Path, chunk: usize) -> io::Result<Cursor> {
        Ok(Cursor {
            file: File::open(path)?,
            file_pos: 0,
            buf: Vec::with_capacity(chunk),
            buf_offset: 0,
            at: 0,
            chunk,
            end: 0,
            base: 0,
            key: Vec::new(),
            same_key: false,
            stamp: 0,
            payload: (0, 0),
            offset: 0,
            done: true,
            mark: None,
        })
    }

    /// Moves to the start of `span` and decodes its first entry.
    fn start_run(&mut self, span: RunSpan) -> io::Result<()> {
        self.end = span.end;
        self.base = span.base;
        self.mark = None;
        self.key.clear();
        self.seek(span.start);
        self.advance()
    }

    /// Moves back to the entry at `offset`, whose key is `key`, and decodes it.
    fn seek_entry(&mut self, offset: u64, key: &[u8]) -> io::Result<()> {
        // The entry's key is coded against the one before it, which shares its first
        // `shared` bytes with `key` itself.
        self.key.clear();
        self.key.extend_from_slice(key);
        self.seek(offset);
        self.advance()
    }

    fn seek(&mut self, offset: u64) {
        let buffered = self.buf_offset..=self.buf_offset + self.buf.len() as u64;
        if buffered.contains(&offset) {
            self.at = (offset - self.buf_offset) as usize;
        } else {
            self.buf.clear();
            self.buf_offset = offset;
            self.at = 0;
        }
    }

    /// Makes at least `n` bytes available from `at` (the caller never asks past the run's
    /// end), keeping the marked bytes when they fit in a chunk.
    fn ensure(&mut self, n: usize) -> io::Result<()> {
        let available = self.buf.len() - self.at;
        if available >= n {
            return Ok(());
        }
        let position = self.buf_offset + self.at as u64;
        let keep_from = match self.mark {
            Some(mark)
                if mark >= self.buf_offset
                    && mark <= position
                    && (position - mark) as usize + n <= self.chunk =>
            {
                (mark - self.buf_offset) as usize
            }
            _ => self.at,
        };
        self.buf.drain(..keep_from);
        self.buf_offset += keep_from as u64;
        self.at -= keep_from;
        let filled_to = self.buf_offset + self.buf.len() as u64;
        let missing = n - available;
        let want = (missing.max(self.chunk.saturating_sub(self.buf.len())) as u64)
            .min(self.end.saturating_sub(filled_to)) as usize;
        if want < missing {
            return Err(corrupt("an entry runs past the end of its run"));
        }
        if self.file_pos != filled_to {
            self.file.seek(SeekFrom::Start(filled_to))?;
        }
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        self.file.read_exact(&mut self.buf[old..])?;
        self.file_pos = filled_to + want as u64;
        Ok(())
    }

    /// Decodes the entry at the read position as the current one, or marks the run done.
    fn advance(&mut self) -> io::Result<()> {
        let offset = self.buf_offset + self.at as u64;
        if offset >= self.end {
            self.done = true;
            return Ok(());
        }
        let remaining = usize::try_from(self.end - offset).unwrap_or(usize::MAX);
        // Two varints of at most 10 bytes each before the key's suffix, two after it.
        self.ensure(remaining.min(20))?;
        let mut pos = self.at;
        let shared = get_u64(&self.buf, &mut pos).ok_or_else(|| corrupt("a key prefix"))?;
        let suffix = get_u64(&self.buf, &mut pos).ok_or_else(|| corrupt("a key length"))?;
        let (Ok(shared), Ok(suffix)) = (usize::try_from(shared), usize::try_from(suffix)) else {
            return Err(corrupt("a key length"));
        };
        if shared > self.key.len() || suffix > remaining {
            return Err(corrupt("a key length"));
        }
        let head = pos - self.at;
        self.ensure(remaining.min(head + suffix + 20))?;
        let mut pos = self.at + head;
        self.same_key = shared == self.key.len() && suffix == 0;
        self.key.truncate(shared);
        self.key.extend_from_slice(&self.buf[pos..pos + suffix]);
        pos += suffix;
        let delta = get_u64(&self.buf, &mut pos).ok_or_else(|| corrupt("a stamp"))?;
        let length = get_u64(&self.buf, &mut pos).ok_or_else(|| corrupt("a payload length"))?;
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= remaining)
            .ok_or_else(|| corrupt("a payload length"))?;
        let head = pos - self.at;
        self.ensure(head + length)?;
        let start = self.at + head;
        self.stamp = i64::try_from(delta)
            .ok()
            .and_then(|delta| self.base.checked_add(delta))
            .ok_or_else(|| corrupt("a stamp"))?;
        self.payload = (start, length);
        self.offset = offset;
        self.at = start + length;
        self.done = false;
        Ok(())
    }

    /// Returns the offset past the current entry.
    fn position(&self) -> u64 {
        self.buf_offset + self.at as u64
    }

    fn payload(&self) -> &[u8] {
        &self.buf[self.payload.0..self.payload.0 + self.payload.1]
    }

    fn buffer_bytes(&self) -> usize {
        self.buf.capacity() + self.key.capacity()
    }
}

/// Merges `level` until at most `limits.fan_in` runs are left, writing each new level
/// into `dir` as `{name}.{depth}.*` and removing the level it read. `meter.disk_bytes`
/// counts `level` on entry and the level returned on exit.
pub(crate) fn merge(
    mut level: Level,
    dir: &Path,
    name: &str,
    limits: SpoolLimits,
    meter: &mut Meter,
) -> io::Result<Level> {
    let fan_in = limits.fan_in.max(2);
    let mut depth = 0;
    while level.runs > fan_in as u64 {
        depth += 1;
        let mut out = RunWriter::create(dir, &format!("{name}.{depth}"), limits.buffer_bytes)?;
        let mut spans = level.spans()?;
        let mut cursors: Vec<Cursor> = Vec::with_capacity(fan_in);
        let mut group = Vec::new();
        loop {
            let mut count = 0;
            for span in spans.by_ref().take(fan_in) {
                let span = span?;
                if count == 0 {
                    // The first run is the earliest: every stamp merged is at or after it.
                    out.start_run(span.base)?;
                }
                if cursors.len() <= count {
                    cursors.push(Cursor::open(&level.data, limits.buffer_bytes)?);
                }
                cursors[count].start_run(span)?;
                count += 1;
            }
            if count == 0 {
                break;
            }
            let cursors = &mut cursors[..count];
            // Runs are in time order, so taking each key's entries run after run keeps
            // them in time order.
            while let Some(smallest) = cursors.iter().filter(|c| !c.done).map(|c| &c.key).min() {
                group.clear();
                group.extend_from_slice(smallest);
                for cursor in cursors.iter_mut() {
                    while !cursor.done && cursor.key == group {
                        out.push(&group, cursor.stamp, cursor.payload())?;
                        cursor.advance()?;
                    }
                }
            }
            out.end_run();
            meter.buffers(
                cursors.iter().map(Cursor::buffer_bytes).sum::<usize>()
                    + out.buffer_bytes()
                    + group.capacity(),
            );
            meter.disk(out.bytes());
        }
        drop(spans);
        let next = out.finish()?;
        meter.disk_bytes = (meter.disk_bytes + next.bytes()).saturating_sub(level.bytes());
        level.remove()?;
        level = next;
    }
    Ok(level)
}

/// Reads the runs of a level one after the other, entry by entry, through one buffer.
pub(crate) struct RunScanner<'a> {
    spans: Box<dyn Iterator<Item = io::Result<RunSpan>> + 'a>,
    cursor: Cursor,
}

impl<'a> RunScanner<'a> {
    /// Opens `level` with a buffer of `buffer_bytes`.
    pub(crate) fn open(level: &'a Level, buffer_bytes: usize) -> io::Result<RunScanner<'a>> {
        Ok(RunScanner {
            spans: Box::new(level.spans()?),
            cursor: Cursor::open(&level.data, buffer_bytes)?,
        })
    }

    /// Moves to the next run and returns its base stamp, or `None` after the last.
    pub(crate) fn next_run(&mut self) -> io::Result<Option<i64>> {
        match self.spans.next().transpose()? {
            Some(span) => {
                self.cursor.start_run(span)?;
                Ok(Some(span.base))
            }
            None => Ok(None),
        }
    }

    /// Calls `visit(key, payload)` for every entry of the run, in order.
    pub(crate) fn for_each_entry<E: From<io::Error>>(
        &mut self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        while !self.cursor.done {
            visit(&self.cursor.key, self.cursor.payload())?;
            self.cursor.advance()?;
        }
        Ok(())
    }

    /// Returns the bytes of its buffers.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.cursor.buffer_bytes()
    }
}

/// The keys of a level of at most `fan_in` runs in ascending order, and each key's entries
/// in time order, as often as asked.
#[derive(Debug)]
pub(crate) struct SeriesReader {
    spans: Vec<RunSpan>,
    cursors: Vec<Cursor>,
    /// The current key.
    key: Vec<u8>,
    /// The cursors holding the current key.
    members: Vec<Member>,
    /// Whether a walk has found where the current key's entries end in every member.
    walked: bool,
}

/// Where the current key's entries lie in one run.
#[derive(Debug, Clone, Copy)]
struct Member {
    cursor: usize,
    /// The first entry's offset.
    start: u64,
    /// Past the last entry, once a walk has found it: the walks after the first stop there
    /// without decoding the entry that follows.
    end: Option<u64>,
}

impl SeriesReader {
    /// Opens every run of `level`, each with a buffer of `buffer_bytes`.
    pub(crate) fn open(level: &Level, buffer_bytes: usize) -> io::Result<SeriesReader> {
        let spans = level.spans()?.collect::<io::Result<Vec<_>>>()?;
        let cursors = spans
            .iter()
            .map(|_| Cursor::open(&level.data, buffer_bytes))
            .collect::<io::Result<Vec<_>>>()?;
        let mut reader = SeriesReader {
            spans,
            cursors,
            key: Vec::new(),
            members: Vec::new(),
            walked: true,
        };
        reader.rewind()?;
        Ok(reader)
    }

    /// Goes back to the first key.
    pub(crate) fn rewind(&mut self) -> io::Result<()> {
        for (cursor, span) in self.cursors.iter_mut().zip(&self.spans) {
            cursor.start_run(*span)?;
        }
        self.members.clear();
        self.walked = true;
        Ok(())
    }

    /// Moves to the next key in ascending order and returns it, or `None` after the last.
    pub(crate) fn next_key(&mut self) -> io::Result<Option<&[u8]>> {
        if !self.walked {
            self.for_each_entry(|_, _| Ok::<(), io::Error>(()))?;
        }
        // Every member moves to the entry after the key's: decoded against the key itself,
        // which is the key before it.
        for member in self.members.drain(..) {
            let cursor = &mut self.cursors[member.cursor];
            cursor.mark = None;
            let end = member.end.expect("a walk found where the entries end");
            cursor.seek_entry(end, &self.key)?;
        }
        let Some(smallest) = self
            .cursors
            .iter()
            .filter(|c| !c.done)
            .map(|c| &c.key)
            .min()
        else {
            return Ok(None);
        };
        self.key.clear();
        self.key.extend_from_slice(smallest);
        for (index, cursor) in self.cursors.iter_mut().enumerate() {
            if !cursor.done && cursor.key == self.key {
                cursor.mark = Some(cursor.offset);
                self.members.push(Member {
                    cursor: index,
                    start: cursor.offset,
                    end: None,
                });
            }
        }
        self.walked = false;
        Ok(Some(&self.key))
    }

    /// Calls `visit(stamp, payload)` for every entry of the current key, in time order.
    pub(crate) fn for_each_entry<E: From<io::Error>>(
        &mut self,
        mut visit: impl FnMut(i64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let SeriesReader {
            cursors,
            key,
            members,
            walked,
            ..
        } = self;
        for member in members.iter_mut() {
            let cursor = &mut cursors[member.cursor];
            cursor.seek_entry(member.start, key)?;
            debug_assert!(cursor.key == *key, "a member's walk starts on its key");
            loop {
                visit(cursor.stamp, cursor.payload())?;
                if member.end == Some(cursor.position()) {
                    break;
                }
                cursor.advance()?;
                if cursor.done || !cursor.same_key {
                    member.end = Some(if cursor.done {
                        cursor.end
                    } else {
                        cursor.offset
                    });
                    break;
                }
            }
        }
        *walked = true;
        Ok(())
    }

    /// Returns the bytes of its buffers.
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.cursors.iter().map(Cursor::buffer_bytes).sum::<usize>() + self.key.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            Just(Decimal::ZERO),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            (
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<bool>(),
                0u32..=28
            )
                .prop_map(|(lo, mid, hi, negative, scale)| Decimal::from_parts(
                    lo, mid, hi, negative, scale
                )),
            (any::<i64>(), 0u32..=28).prop_map(|(m, scale)| Decimal::new(m, scale)),
        ]
    }

    proptest! {
        /// Shows that a decimal comes back from the spool with its exact value, scale
        /// included (zeros aside, which are all equal), and that skipping moves past exactly
        /// as many bytes as reading.
        #[test]
        fn decimals_come_back_exact(values in prop::collection::vec(decimal(), 1..20)) {
            let mut bytes = Vec::new();
            for value in &values {
                put_decimal(&mut bytes, *value);
            }
            let mut pos = 0;
            for value in &values {
                let back = get_decimal(&bytes, &mut pos).unwrap();
                prop_assert_eq!(back, *value);
                if !value.is_zero() {
                    prop_assert_eq!(back.scale(), value.scale());
                    prop_assert_eq!(back.mantissa(), value.mantissa());
                }
            }
            prop_assert_eq!(pos, bytes.len());
            let mut skipped = 0;
            skip_decimals(&bytes, &mut skipped, values.len()).unwrap();
            prop_assert_eq!(skipped, bytes.len());
            // Cut short, it is refused, never misread.
            let mut pos = 0;
            let cut = &bytes[..bytes.len() - 1];
            let read: Option<Vec<Decimal>> =
                values.iter().map(|_| get_decimal(cut, &mut pos)).collect();
            prop_assert!(read.is_none());
        }

        /// Shows the transposition: runs of rows written step by step, merged with a small
        /// fan-in through tiny buffers, read back key by key in ascending order, each key's
        /// entries in time order, the same on a second walk after a rewind.
        #[test]
        fn merged_runs_read_back_series_by_series(
            steps in prop::collection::vec(
                prop::collection::btree_map(
                    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0xc3)], 0..40),
                    prop::collection::vec(any::<u8>(), 0..60),
                    0..6,
                ),
                0..30,
            ),
            fan_in in 2usize..5,
            buffer_bytes in 1usize..64,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut writer = RunWriter::create(dir.path(), "t.0", buffer_bytes).unwrap();
            let mut expected: BTreeMap<Vec<u8>, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
            for (step, rows) in steps.iter().enumerate() {
                let stamp = 1_000 + 3_600 * step as i64;
                for (key, payload) in rows {
                    writer.push(key, stamp, payload).unwrap();
                    expected.entry(key.clone()).or_default().push((stamp, payload.clone()));
                }
                writer.end_run();
            }
            let level = writer.finish().unwrap();
            let limits = SpoolLimits { fan_in, buffer_bytes };
            let mut meter = Meter { disk_bytes: level.bytes(), ..Meter::default() };
            let level = merge(level, dir.path(), "t", limits, &mut meter).unwrap();
            prop_assert!(level.runs <= fan_in as u64);
            let mut reader = SeriesReader::open(&level, buffer_bytes).unwrap();
            for _ in 0..2 {
                reader.rewind().unwrap();
                let mut got: BTreeMap<Vec<u8>, Vec<(i64, Vec<u8>)>> = BTreeMap::new();
                let mut keys = Vec::new();
                while let Some(key) = reader.next_key().unwrap() {
                    let key = key.to_vec();
                    keys.push(key.clone());
                    for _ in 0..2 {
                        let mut entries = Vec::new();
                        reader
                            .for_each_entry(|stamp, payload| {
                                entries.push((stamp, payload.to_vec()));
                                Ok::<(), io::Error>(())
                            })
                            .unwrap();
                        got.insert(key.clone(), entries);
                    }
                }
                prop_assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "keys ascend");
                prop_assert_eq!(&got, &expected);
            }
            // Keys skipped without a walk are passed over all the same.
            reader.rewind().unwrap();
            let mut count = 0;
            while reader.next_key().unwrap().is_some() {
                count += 1;
            }
            prop_assert_eq!(count, expected.len());
        }
    }

    /// Shows that a run's entries must ascend: the merge depends on it.
    #[test]
    #[should_panic(expected = "strictly ascending")]
    fn refuses_entries_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = RunWriter::create(dir.path(), "t.0", 64).unwrap();
        writer.push(b"b", 0, b"").unwrap();
        let _ = writer.push(b"a", 0, b"");
    }

    /// Shows that a spool cut short is reported as corrupt, not misread.
    #[test]
    fn reports_a_truncated_spool() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = RunWriter::create(dir.path(), "t.0", 64).unwrap();
        writer.push(b"acme", 7, &[1, 2, 3, 4]).unwrap();
        writer.end_run();
        let mut level = writer.finish().unwrap();
        level.data_len -= 2;
        let error = SeriesReader::open(&level, 64).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }
}
