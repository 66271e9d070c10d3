//! The ledger files of `replay` and `produce` as they come out of exports: one or several
//! files read as one ledger, each plain, gzip or zstd, with or without a UTF-8 byte order
//! mark.
//!
//! [`InputReader`] reads its inputs in the order given, each through its own
//! [`JsonlReader`], so that a batch never spans two files and every line keeps its file
//! (the batch's [`InputBatch::input`]) and its 1-based line number within that file.
//!
//! One input is a stack of readers, each doing one job:
//!
//! ```text
//!  File or Stdin ─► RawInput ─► Decoder ──────────► SkipBom ─► JsonlReader
//!                   (look-ahead (plain, gzip: flate2 (one leading   (batches of lines)
//!                    for magic,  MultiGzDecoder,    EF BB BF
//!                    counts the  zstd: zstd Decoder) dropped)
//!                    bytes used)
//! ```
//!
//! **The format is told by the bytes, not the name.** The first bytes of each input are
//! looked at before anything is decoded: `1f 8b` is gzip, `28 b5 2f fd` (or a skippable
//! frame) zstd, anything else is read as it is. xz, bzip2, lz4 and zip are recognised too,
//! and refused with an error that says so, rather than read as lines of garbage.
//!
//! **The byte offset is of the file.** [`RawInput`] counts the bytes the decoder has
//! consumed (not merely read ahead): this is the progress of the input, so that a progress
//! bar over the files' sizes works for compressed files, and the offset an error names.
//!
//! **A corrupt or truncated compressed input is an error, and the end of that input.**
//! Both decoders fail on data that ends inside a member or frame, and gzip checks each
//! member's CRC and length, so a truncated file never ends in a partial line taken for the
//! last one. After such an error the reader stops: the batch in progress is dropped with
//! its partial line. Lines of earlier batches are out already; a replay that fails this way
//! writes no result.
//!
//! **Memory stays bounded.** The decoders write straight into the batch buffer of the
//! [`JsonlReader`], with its bounds; their own state is a fixed window (32 KiB for gzip; for
//! zstd what the frame asks, at most the library's default limit of 128 MiB, refused
//! beyond). The files are opened one at a time.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, ErrorKind, Read};
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::error::ConsumerError;
use crate::jsonl::{JsonlReader, LineBatch, ReaderOptions};

/// The UTF-8 byte order mark, skipped at the start of each input (RFC 8259 section 8.1
/// allows a parser to ignore it, and Windows tools write it).
const BYTE_ORDER_MARK: [u8; 3] = [0xef, 0xbb, 0xbf];

/// The bytes looked at to tell the format: the longest magic number (xz's) is six bytes.
const MAGIC_BYTES: usize = 6;

/// The look-ahead buffer of a compressed input (128 KiB): the decoder takes its input from
/// it, so it should hold many of the decoder's blocks. A plain input is read around it.
const RAW_BUFFER_BYTES: usize = 128 * 1024;

/// How an input is compressed, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (RFC 1952), one member or several concatenated.
    Gzip,
    /// Zstandard (RFC 8878), one frame or several concatenated.
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// What the first bytes of an input say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A format that is read.
    Read(Compression),
    /// A compressed format that is not read, by its name.
    Unsupported(&'static str),
}

/// Returns the format of an input that starts with `magic` (its first [`MAGIC_BYTES`]
/// bytes, fewer if it is shorter).
fn detect(magic: &[u8]) -> Format {
    match magic {
        [0x1f, 0x8b, ..] => Format::Read(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Format::Read(Compression::Zstd),
        // A skippable frame (RFC 8878 section 3.1.2), which the decoder skips.
        [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Format::Read(Compression::Zstd),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Format::Unsupported("xz"),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Format::Unsupported("bzip2"),
        [0x04, 0x22, 0x4d, 0x18, ..] => Format::Unsupported("lz4"),
        [b'P', b'K', 0x03, 0x04, ..] => Format::Unsupported("zip"),
        _ => Format::Read(Compression::None),
    }
}

/// Reads `out` from `inner`, retrying `Interrupted`, and records whether the read failed.
fn read_retrying(inner: &mut dyn Read, out: &mut [u8], failed: &mut bool) -> io::Result<usize> {
    loop {
        match inner.read(out) {
            Ok(count) => {
                *failed = false;
                return Ok(count.min(out.len()));
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => {
                *failed = true;
                return Err(error);
            }
        }
    }
}

/// The bytes of one input as they are in the file: read through a buffer that can look
/// ahead (to tell the format) and that counts the bytes consumed.
///
/// A decoder takes its input through [`BufRead`], so the count is of the bytes it has used,
/// not of those it merely has in view. A plain input is read through [`Read`], which skips
/// the buffer for large reads once the bytes looked at are out, so that a plain file is not
/// copied twice.
struct RawInput {
    /// The file or standard input.
    inner: Box<dyn Read + Send>,
    /// Bytes read from `inner` and not consumed yet lie in `buffer[start..end]`.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed so far: the offset in the file of `buffer[start]`.
    consumed: u64,
    /// Whether the last read of `inner` failed: tells a failed read (of the disk, the pipe)
    /// from bad data found by a decoder.
    failed: bool,
}

impl RawInput {
    fn new(inner: Box<dyn Read + Send>) -> RawInput {
        RawInput {
            inner,
            buffer: vec![0; RAW_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            consumed: 0,
            failed: false,
        }
    }

    /// Returns the first `count` bytes not consumed (fewer at the end of the input), reading
    /// until there are that many. Consumes nothing.
    fn peek(&mut self, count: usize) -> io::Result<&[u8]> {
        debug_assert!(count <= self.buffer.len(), "a peek fits in the buffer");
        if self.buffer.len() - self.start < count {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end - self.start < count {
            let read = read_retrying(
                &mut self.inner,
                &mut self.buffer[self.end..],
                &mut self.failed,
            )?;
            if read == 0 {
                break;
            }
            self.end += read;
        }
        Ok(&self.buffer[self.start..self.end.min(self.start + count)])
    }
}

impl Read for RawInput {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end && out.len() >= self.buffer.len() {
            let read = read_retrying(&mut self.inner, out, &mut self.failed)?;
            self.consumed += read as u64;
            return Ok(read);
        }
        let available = self.fill_buf()?;
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl BufRead for RawInput {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = read_retrying(&mut self.inner, &mut self.buffer, &mut self.failed)?;
        }
        Ok(&self.buffer[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.end - self.start);
        self.start += amount;
        self.consumed += amount as u64;
    }
}

/// One input, decompressed as its first bytes say.
enum Decoder {
    Plain(RawInput),
    Gzip(flate2::bufread::MultiGzDecoder<RawInput>),
    Zstd(zstd::stream::read::Decoder<'static, RawInput>),
}

impl Decoder {
    /// Returns the bytes of the file beneath.
    fn raw(&self) -> &RawInput {
        match self {
            Decoder::Plain(raw) => raw,
            Decoder::Gzip(decoder) => decoder.get_ref(),
            Decoder::Zstd(decoder) => decoder.get_ref(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(raw) => raw.read(out),
            Decoder::Gzip(decoder) => decoder.read(out),
            Decoder::Zstd(decoder) => decoder.read(out),
        }
    }
}

/// Drops one UTF-8 byte order mark at the start of the stream; one anywhere else stays.
struct SkipBom<R> {
    inner: R,
    /// The first bytes of the stream, held to compare them with the mark.
    head: [u8; 3],
    /// `head[head_start..head_end]` is still to be returned.
    head_start: usize,
    head_end: usize,
    /// Whether the first bytes were compared already.
    checked: bool,
}

impl<R: Read> SkipBom<R> {
    fn new(inner: R) -> SkipBom<R> {
        SkipBom {
            inner,
            head: [0; 3],
            head_start: 0,
            head_end: 0,
            checked: false,
        }
    }
}

impl<R: Read> Read for SkipBom<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.checked {
            // A failed read leaves the bytes got so far in `head`, and the next call goes on.
            while self.head_end < self.head.len() {
                let read = self.inner.read(&mut self.head[self.head_end..])?;
                if read == 0 {
                    break;
                }
                self.head_end += read;
            }
            self.checked = true;
            if self.head[..self.head_end] == BYTE_ORDER_MARK {
                self.head_start = self.head_end;
            }
        }
        if self.head_start < self.head_end {
            let count = (self.head_end - self.head_start).min(out.len());
            out[..count].copy_from_slice(&self.head[self.head_start..self.head_start + count]);
            self.head_start += count;
            return Ok(count);
        }
        self.inner.read(out)
    }
}

/// One input as given.
#[derive(Debug, Clone)]
struct Input {
    /// The path as given; `-` is standard input.
    path: PathBuf,
    /// The size of a regular file, for the progress bar.
    size: Option<u64>,
}

/// The input being read.
struct Current {
    /// Its index in the inputs.
    index: usize,
    compression: Compression,
    reader: JsonlReader<SkipBom<Decoder>>,
}

/// A batch of lines of one input.
#[derive(Debug)]
pub struct InputBatch {
    /// The index of the input the lines are from, in the list given to
    /// [`InputReader::open`]; see [`InputReader::path`].
    pub input: usize,
    /// The lines, numbered from 1 within their input.
    pub lines: LineBatch,
}

/// Reads several JSONL inputs, each plain, gzip or zstd, in order, as batches of lines.
///
/// ```
/// use std::io::Write;
/// use marginstream_consumer::input::InputReader;
/// use marginstream_consumer::ReaderOptions;
///
/// let dir = tempfile::tempdir().unwrap();
/// let plain = dir.path().join("a.jsonl");
/// std::fs::write(&plain, b"\xef\xbb\xbf{\"a\":1}\n{\"a\":2}\n").unwrap();
/// let packed = dir.path().join("b.jsonl.gz");
/// let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
/// encoder.write_all(b"{\"b\":1}\n").unwrap();
/// std::fs::write(&packed, encoder.finish().unwrap()).unwrap();
///
/// let mut reader = InputReader::open(&[plain, packed], ReaderOptions::default()).unwrap();
/// let first = reader.next_batch().unwrap().expect("the lines of a.jsonl");
/// assert_eq!((first.input, first.lines.line(0)), (0, &b"{\"a\":1}"[..]));
/// let second = reader.next_batch().unwrap().expect("the line of b.jsonl.gz");
/// assert_eq!((second.input, second.lines.lines[0].number), (1, 1));
/// assert!(reader.next_batch().unwrap().is_none());
/// assert_eq!(reader.lines_read(), 3);
/// assert_eq!(Some(reader.bytes_read()), reader.total_bytes());
/// ```
pub struct InputReader {
    inputs: Vec<Input>,
    options: ReaderOptions,
    /// The input being read; `None` between two inputs and at the end. Boxed, so that the
    /// reader is small to move (a `JsonlReader` is a few hundred bytes).
    current: Option<Box<Current>>,
    /// The index of the next input to open.
    next: usize,
    /// Bytes of the inputs read to their end.
    bytes_done: u64,
    /// Lines of the inputs read to their end.
    lines_done: u64,
    /// Set by an error after which the reader cannot go on: the input (path and offset)
    /// where it stopped.
    stopped: Option<(PathBuf, u64)>,
    /// A recycled batch given back between two inputs, for the next one.
    spare: Option<LineBatch>,
}

impl InputReader {
    /// Returns a reader of `paths` in this order (`-` is standard input), each cut into
    /// batches with `options`.
    ///
    /// Every path is checked before any line is read: a file that cannot be opened, or is
    /// compressed with a format that is not read, fails at once rather than after the
    /// files before it. Only regular files are looked into this way (a pipe's bytes would
    /// be lost); the inputs are then opened one at a time, as they are reached.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::StdinRepeated`] when `-` is given more than once,
    /// [`ConsumerError::Open`] when a file cannot be opened,
    /// [`ConsumerError::UnsupportedCompression`] for an xz, bzip2, lz4 or zip file.
    pub fn open(paths: &[PathBuf], options: ReaderOptions) -> Result<InputReader, ConsumerError> {
        let stdin_count = paths.iter().filter(|path| is_stdin(path)).count();
        if stdin_count > 1 {
            return Err(ConsumerError::StdinRepeated { count: stdin_count });
        }
        let mut inputs = Vec::with_capacity(paths.len());
        for path in paths {
            let size = if is_stdin(path) {
                None
            } else {
                let open_error = |source| ConsumerError::Open {
                    path: path.clone(),
                    source,
                };
                let file = File::open(path).map_err(open_error)?;
                let metadata = file.metadata().map_err(open_error)?;
                if metadata.is_file() {
                    // Opened and looked into at once; opened again when its turn comes.
                    open_decoder(path, Box::new(file))?;
                    Some(metadata.len())
                } else {
                    None
                }
            };
            inputs.push(Input {
                path: path.clone(),
                size,
            });
        }
        Ok(InputReader {
            inputs,
            options,
            current: None,
            next: 0,
            bytes_done: 0,
            lines_done: 0,
            stopped: None,
            spare: None,
        })
    }

    /// Returns the next batch of lines, or `None` after the last line of the last input.
    /// A batch holds lines of one input only; an input without lines gives no batch.
    ///
    /// # Errors
    ///
    /// [`ConsumerError::Open`] when an input cannot be opened,
    /// [`ConsumerError::UnsupportedCompression`] when it is compressed with a format not
    /// read, [`ConsumerError::Input`] when a read fails (for a plain input, calling again
    /// retries it), [`ConsumerError::Decompress`] when compressed data is corrupt or
    /// truncated. After any error but a failed read of a plain input, the reader stops:
    /// every later call returns [`ConsumerError::Input`] for the input where it stopped.
    pub fn next_batch(&mut self) -> Result<Option<InputBatch>, ConsumerError> {
        loop {
            if let Some((path, offset)) = &self.stopped {
                return Err(ConsumerError::Input {
                    path: path.clone(),
                    offset: *offset,
                    source: io::Error::other("reading stopped at an earlier error"),
                });
            }
            let Some(current) = &mut self.current else {
                if self.next == self.inputs.len() {
                    return Ok(None);
                }
                let index = self.next;
                let path = &self.inputs[index].path;
                let opened = open_input(path).and_then(|raw| open_decoder(path, raw));
                let (compression, decoder) = match opened {
                    Ok(opened) => opened,
                    Err(error) => {
                        self.stopped = Some((path.clone(), 0));
                        return Err(error);
                    }
                };
                debug!(path = %path.display(), %compression, "reading an input");
                let mut reader = JsonlReader::new(SkipBom::new(decoder), self.options);
                if let Some(spare) = self.spare.take() {
                    reader.recycle(spare);
                }
                self.next += 1;
                self.current = Some(Box::new(Current {
                    index,
                    compression,
                    reader,
                }));
                continue;
            };
            match current.reader.next_batch() {
                Ok(Some(lines)) => {
                    return Ok(Some(InputBatch {
                        input: current.index,
                        lines,
                    }))
                }
                Ok(None) => {
                    self.bytes_done += current.reader.get_ref().inner.raw().consumed;
                    self.lines_done += current.reader.lines_read();
                    self.spare = current.reader.take_spare();
                    self.current = None;
                }
                Err(ConsumerError::Read { source, .. }) => {
                    let raw = current.reader.get_ref().inner.raw();
                    let path = self.inputs[current.index].path.clone();
                    let offset = raw.consumed;
                    if current.compression == Compression::None {
                        // The reader is intact and a retry may succeed (a transient error).
                        return Err(ConsumerError::Input {
                            path,
                            offset,
                            source,
                        });
                    }
                    self.stopped = Some((path.clone(), offset));
                    return Err(if raw.failed {
                        ConsumerError::Input {
                            path,
                            offset,
                            source,
                        }
                    } else {
                        ConsumerError::Decompress {
                            path,
                            compression: current.compression,
                            offset,
                            source: explain(source),
                        }
                    });
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Gives back a consumed batch so that its buffers serve a later batch. Optional.
    pub fn recycle(&mut self, batch: LineBatch) {
        match &mut self.current {
            Some(current) => current.reader.recycle(batch),
            None => self.spare = Some(batch),
        }
    }

    /// Returns the bytes of the files consumed so far: compressed bytes for a compressed
    /// input, so that it compares with [`total_bytes`](Self::total_bytes).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_done
            + self
                .current
                .as_ref()
                .map_or(0, |current| current.reader.get_ref().inner.raw().consumed)
    }

    /// Returns the lines seen so far in all inputs, blank ones included.
    pub fn lines_read(&self) -> u64 {
        self.lines_done
            + self
                .current
                .as_ref()
                .map_or(0, |current| current.reader.lines_read())
    }

    /// Returns the sum of the inputs' sizes in bytes, or `None` when one of them is not a
    /// regular file (standard input, a pipe).
    pub fn total_bytes(&self) -> Option<u64> {
        self.inputs.iter().map(|input| input.size).sum()
    }

    /// Returns the path of input `index` as given (`-` for standard input).
    ///
    /// # Panics
    ///
    /// Panics if `index` is not below [`len`](Self::len).
    pub fn path(&self, index: usize) -> &Path {
        &self.inputs[index].path
    }

    /// Returns the number of inputs.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Returns whether there is no input at all.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

impl fmt::Debug for InputReader {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InputReader")
            .field("inputs", &self.inputs)
            .field("next", &self.next)
            .field("bytes_read", &self.bytes_read())
            .field("lines_read", &self.lines_read())
            .finish_non_exhaustive()
    }
}

/// Adds what to do to a decoder error that is not about bad data: libzstd refuses a frame
/// whose window is larger than its default limit (`ZSTD_WINDOWLOG_LIMIT_DEFAULT`, 128 MiB),
/// which bounds the memory of decoding; only `zstd --long=28` or more writes such frames.
fn explain(error: io::Error) -> io::Error {
    // The text of ZSTD_error_frameParameter_windowTooLarge, the one way the crate tells it.
    if error.to_string().contains("requires too much memory") {
        return io::Error::new(
            error.kind(),
            format!(
                "{error}: the frame's window is over the 128 MiB this reader allows (written with zstd --long=28 or more); decompress it first with zstd -d --long=31"
            ),
        );
    }
    error
}

/// Returns whether `path` means standard input.
fn is_stdin(path: &Path) -> bool {
    path == Path::new("-")
}

/// Opens `path`, or standard input for `-`.
fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, ConsumerError> {
    if is_stdin(path) {
        return Ok(Box::new(io::stdin()));
    }
    let file = File::open(path).map_err(|source| ConsumerError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(Box::new(file))
}

/// Tells the format of `inner` by its first bytes and returns the decoder for it.
fn open_decoder(
    path: &Path,
    inner: Box<dyn Read + Send>,
) -> Result<(Compression, Decoder), ConsumerError> {
    let mut raw = RawInput::new(inner);
    let magic = raw
        .peek(MAGIC_BYTES)
        .map_err(|source| ConsumerError::Input {
            path: path.to_owned(),
            offset: 0,
            source,
        })?;
    let compression = match detect(magic) {
        Format::Read(compression) => compression,
        Format::Unsupported(format) => {
            return Err(ConsumerError::UnsupportedCompression {
                path: path.to_owned(),
                format,
            })
        }
    };
    let decoder = match compression {
        Compression::None => Decoder::Plain(raw),
        Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw).map_err(
            |source| ConsumerError::Decompress {
                path: path.to_owned(),
                compression,
                offset: 0,
                source,
            },
        )?),
    };
    Ok((compression, decoder))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    /// A line as the tests compare them: input index, line number, text (lossy UTF-8).
    type Line = (usize, u64, String);

    /// A ledger-like text of `count` lines with a blank line and a `\r\n` here and there.
    fn text(count: usize, tag: &str) -> Vec<u8> {
        let mut text = Vec::new();
        for number in 0..count {
            let end = if number % 5 == 0 { "\r\n" } else { "\n" };
            let padding = "p".repeat(number * 13 % 71);
            text.extend_from_slice(
                format!("{{\"{tag}\":{number},\"x\":\"{padding}\"}}{end}").as_bytes(),
            );
            if number % 11 == 3 {
                text.extend_from_slice(b"\n");
            }
        }
        text
    }

    fn gzip(members: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for member in members {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(member).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        out
    }

    fn zstd(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            encoder.include_checksum(true).unwrap();
            encoder.write_all(frame).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        out
    }

    /// Writes `files` into a temporary directory and returns it with their paths.
    fn write_files(files: &[&[u8]]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let paths = files
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                let path = dir.path().join(format!("input-{index}"));
                std::fs::write(&path, bytes).expect("the test file is written");
                path
            })
            .collect();
        (dir, paths)
    }

    fn options(batch_bytes: usize) -> ReaderOptions {
        ReaderOptions {
            batch_bytes,
            keep_blank_lines: true,
            ..ReaderOptions::default()
        }
    }

    /// Reads every batch until the end or the first error; checks that a batch is never
    /// empty and holds lines of one input; returns the lines and the error.
    fn read_all(reader: &mut InputReader) -> (Vec<Line>, Option<ConsumerError>) {
        let mut lines = Vec::new();
        loop {
            match reader.next_batch() {
                Ok(Some(batch)) => {
                    assert!(!batch.lines.is_empty(), "a batch is never empty");
                    for (line, bytes) in batch.lines.iter() {
                        lines.push((
                            batch.input,
                            line.number,
                            String::from_utf8_lossy(bytes).into_owned(),
                        ));
                    }
                    reader.recycle(batch.lines);
                }
                Ok(None) => return (lines, None),
                Err(error) => return (lines, Some(error)),
            }
        }
    }

    /// Asserts two lists of lines are equal, showing the first difference only.
    fn assert_lines_eq(actual: &[Line], expected: &[Line], context: &str) {
        if let Some(index) = (0..actual.len().max(expected.len()))
            .find(|&index| actual.get(index) != expected.get(index))
        {
            panic!(
                "{context}: {} lines, {} expected; first difference at {index}: {:?} instead of {:?}",
                actual.len(),
                expected.len(),
                actual.get(index),
                expected.get(index)
            );
        }
    }

    /// The lines of plain `files`, read the same way: the reference.
    fn plain_lines(files: &[&[u8]], batch_bytes: usize) -> Vec<Line> {
        let (_dir, paths) = write_files(files);
        let mut reader = InputReader::open(&paths, options(batch_bytes)).unwrap();
        let (lines, error) = read_all(&mut reader);
        assert!(error.is_none());
        lines
    }

    /// The same text plain, as gzip, as gzip of three members, as zstd and as zstd of two
    /// frames gives the same lines, whatever the batch size, and the progress ends at the
    /// file's size.
    #[test]
    fn reads_gzip_and_zstd_like_plain() {
        let text = text(3000, "a");
        // Members and frames that end inside a line, and one of a few bytes.
        let (head, rest) = text.split_at(text.len() / 3);
        let (middle, tail) = rest.split_at(3);
        for batch_bytes in [0, 1000, 1 << 20] {
            let expected = plain_lines(&[&text], batch_bytes);
            assert_eq!(expected.len(), 3000 + 273);
            for (name, bytes, compression) in [
                ("gzip", gzip(&[&text]), Compression::Gzip),
                (
                    "gzip members",
                    gzip(&[head, middle, tail]),
                    Compression::Gzip,
                ),
                ("zstd", zstd(&[&text]), Compression::Zstd),
                ("zstd frames", zstd(&[head, rest]), Compression::Zstd),
            ] {
                assert_eq!(detect(&bytes[..MAGIC_BYTES]), Format::Read(compression));
                let (_dir, paths) = write_files(&[&bytes]);
                let mut reader = InputReader::open(&paths, options(batch_bytes)).unwrap();
                assert_eq!(reader.total_bytes(), Some(bytes.len() as u64));
                let (lines, error) = read_all(&mut reader);
                assert!(error.is_none(), "{name}: {error:?}");
                assert_lines_eq(
                    &lines,
                    &expected,
                    &format!("{name}, batch_bytes {batch_bytes}"),
                );
                assert_eq!(reader.bytes_read(), bytes.len() as u64, "{name}");
                assert_eq!(reader.lines_read(), 3000 + 273, "{name}");
            }
        }
    }

    /// Several inputs are read in order as one: batches never span two, each line has its
    /// input and its number within it, empty inputs give nothing, and the counts add up.
    #[test]
    fn reads_several_inputs_in_order() {
        let first = text(40, "first");
        let second = text(25, "second");
        let files: [&[u8]; 4] = [&first, b"", &gzip(&[&second]), &zstd(&[b"{\"last\":1}"])];
        let (_dir, paths) = write_files(&files);
        for batch_bytes in [0, 300, 1 << 20] {
            let mut reader = InputReader::open(&paths, options(batch_bytes)).unwrap();
            let (lines, error) = read_all(&mut reader);
            assert!(error.is_none(), "{error:?}");
            let mut expected = plain_lines(&[&first], batch_bytes);
            expected.extend(
                plain_lines(&[&second], batch_bytes)
                    .into_iter()
                    .map(|(_, number, bytes)| (2, number, bytes)),
            );
            expected.push((3, 1, "{\"last\":1}".to_owned()));
            assert_eq!(lines, expected);
            let sizes: u64 = files.iter().map(|file| file.len() as u64).sum();
            assert_eq!(reader.total_bytes(), Some(sizes));
            assert_eq!(reader.bytes_read(), sizes);
            assert_eq!(reader.lines_read(), 40 + 4 + 25 + 2 + 1);
            assert_eq!(reader.path(3), paths[3]);
        }
    }

    /// One byte order mark at the start of each input is dropped, compressed or not; one
    /// elsewhere, or a second one, stays for the parser to reject.
    #[test]
    fn skips_a_leading_byte_order_mark_per_input() {
        let with_mark = b"\xef\xbb\xbf{\"a\":1}\n\xef\xbb\xbf{\"a\":2}\n";
        let twice = b"\xef\xbb\xbf\xef\xbb\xbf{}";
        let files: [&[u8]; 5] = [
            with_mark,
            &gzip(&[with_mark]),
            &zstd(&[with_mark]),
            twice,
            b"\xef\xbb\xbf",
        ];
        let (_dir, paths) = write_files(&files);
        let mut reader = InputReader::open(&paths, options(1 << 20)).unwrap();
        let (lines, error) = read_all(&mut reader);
        assert!(error.is_none());
        let mut expected = Vec::new();
        for input in 0..3 {
            expected.push((input, 1, "{\"a\":1}".to_owned()));
            expected.push((input, 2, "\u{feff}{\"a\":2}".to_owned()));
        }
        expected.push((3, 1, "\u{feff}{}".to_owned()));
        assert_eq!(lines, expected);
        assert_eq!(reader.lines_read(), 7, "a file of a mark alone has no line");
    }

    /// A mark cut by short reads is still recognised, and a start that only looks like one
    /// is returned whole.
    #[test]
    fn skips_a_byte_order_mark_read_a_byte_at_a_time() {
        struct ByteAtATime<'a>(&'a [u8]);
        impl Read for ByteAtATime<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let count = self.0.len().min(out.len()).min(1);
                out[..count].copy_from_slice(&self.0[..count]);
                self.0 = &self.0[count..];
                Ok(count)
            }
        }
        for (input, expected) in [
            (&b"\xef\xbb\xbf{}"[..], &b"{}"[..]),
            (b"\xef\xbb{}", b"\xef\xbb{}"),
            (b"\xef", b"\xef"),
            (b"{}", b"{}"),
        ] {
            let mut out = Vec::new();
            SkipBom::new(ByteAtATime(input))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, expected);
        }
    }

    /// xz, bzip2, lz4 and zip files are refused at open, naming the file and the format;
    /// a start that only resembles one is read as text.
    #[test]
    fn refuses_other_compressions_by_their_magic() {
        for (bytes, format) in [
            (&b"\xfd7zXZ\x00\x00\x04"[..], "xz"),
            (b"BZh91AY&SY", "bzip2"),
            (b"\x04\x22\x4d\x18\x64\x40", "lz4"),
            (b"PK\x03\x04\x14\x00", "zip"),
        ] {
            let (_dir, paths) = write_files(&[bytes]);
            let error = InputReader::open(&paths, options(1 << 20)).expect_err(format);
            assert_eq!(
                error.to_string(),
                format!("{} is compressed with {format}, which marginstream does not read: decompress it first, or recompress it with gzip or zstd", paths[0].display())
            );
        }
        assert_eq!(detect(b"BZh0"), Format::Read(Compression::None));
        assert_eq!(detect(b"\x1f"), Format::Read(Compression::None));
        assert_eq!(detect(b"{\"a\""), Format::Read(Compression::None));
    }

    /// `-` twice is refused; a missing file is refused at open, naming it.
    #[test]
    fn refuses_stdin_twice_and_missing_files() {
        let error = InputReader::open(&[PathBuf::from("-"), PathBuf::from("-")], options(1))
            .expect_err("stdin twice");
        assert!(matches!(error, ConsumerError::StdinRepeated { count: 2 }));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.jsonl.gz");
        let error =
            InputReader::open(std::slice::from_ref(&missing), options(1)).expect_err("missing");
        assert_eq!(
            error.to_string(),
            format!("cannot open the ledger {}", missing.display())
        );
    }

    /// Checks a read of a damaged file: every line returned is a whole line of the
    /// original with its number (never a partial one, never garbage), and the error, when
    /// there is one, is a `Decompress` naming the file with an offset within it, after
    /// which the reader stays stopped.
    fn check_damaged(damaged: &[u8], expected: &[Line], compression: Compression) -> Option<u64> {
        let cut = damaged.len();
        let (_dir, paths) = write_files(&[damaged]);
        let mut reader = InputReader::open(&paths, options(200)).unwrap();
        let (lines, error) = read_all(&mut reader);
        for line in &lines {
            assert!(
                expected.contains(line),
                "{compression} cut at {cut}: a line not of the original: {line:?}"
            );
        }
        assert_eq!(
            lines,
            expected[..lines.len()],
            "the lines are a prefix of the original"
        );
        let error = error?;
        let ConsumerError::Decompress {
            path,
            compression: found,
            offset,
            ..
        } = &error
        else {
            panic!("bad compressed data is a decompression error, got {error}");
        };
        assert_eq!((path, *found), (&paths[0], compression));
        assert!(*offset <= damaged.len() as u64);
        assert!(
            error.to_string().contains(&format!(
                "{} ({compression}) at byte {offset} of the file",
                paths[0].display()
            )),
            "{error}"
        );
        assert!(reader.next_batch().is_err(), "the reader stays stopped");
        Some(*offset)
    }

    /// A gzip or zstd file cut at any byte after its magic number is an error at the cut
    /// (the decoder consumed everything), and no partial line comes out; a multi-member
    /// gzip cut right between members is whole members, and reads as such.
    #[test]
    fn truncated_compressed_files_fail_at_their_end() {
        let text = text(60, "t");
        let expected = plain_lines(&[&text], 200);
        // Members end at a line end: a file cut between them is whole lines.
        let seventh_line_end = text
            .iter()
            .enumerate()
            .filter(|(_, &byte)| byte == b'\n')
            .nth(6)
            .map(|(index, _)| index)
            .unwrap();
        let (head, tail) = text.split_at(seventh_line_end + 1);
        for (bytes, compression, boundary) in [
            (gzip(&[&text]), Compression::Gzip, None),
            (zstd(&[&text]), Compression::Zstd, None),
            (
                gzip(&[head, tail]),
                Compression::Gzip,
                Some(gzip(&[head]).len()),
            ),
        ] {
            for cut in 4..bytes.len() {
                let offset = check_damaged(&bytes[..cut], &expected, compression);
                if Some(cut) == boundary {
                    assert_eq!(offset, None, "whole members are a valid file");
                } else {
                    assert_eq!(offset, Some(cut as u64), "cut at {cut} of {compression}");
                }
            }
        }
    }

    /// Any byte of a gzip file changed after its header (the deflate data, the CRC, the
    /// length) is an error, not lines of garbage taken as the ledger: the lines returned
    /// before it are whole lines of the original (the CRC is checked at the end of the
    /// member, so a batch cut before it may pass; replay then fails and writes no result).
    #[test]
    fn corrupt_gzip_bytes_are_errors() {
        let text = text(40, "c");
        let bytes = gzip(&[&text]);
        // The header is 10 bytes; its time, flags and OS are not covered by a checksum.
        for index in 10..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x55;
            let (_dir, paths) = write_files(&[&damaged]);
            let mut reader = InputReader::open(&paths, options(1 << 20)).unwrap();
            let (lines, error) = read_all(&mut reader);
            assert!(
                lines.is_empty(),
                "byte {index}: one batch holds all, and is dropped"
            );
            let error = error.unwrap_or_else(|| panic!("byte {index} changed went unnoticed"));
            assert!(
                matches!(error, ConsumerError::Decompress { .. }),
                "byte {index}: {error}"
            );
        }
    }

    /// A zstd frame that asks for a 256 MiB window is refused before anything is read,
    /// saying how to decompress it, rather than decoded in unbounded memory.
    #[test]
    fn refuses_a_zstd_window_over_the_limit() {
        // Streamed, so the size is unknown and the frame keeps the window it was given.
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.window_log(28).unwrap();
        encoder.write_all(b"{\"a\":1}\n").unwrap();
        let (_dir, paths) = write_files(&[&encoder.finish().unwrap()]);
        let mut reader = InputReader::open(&paths, options(1 << 20)).unwrap();
        let (lines, error) = read_all(&mut reader);
        assert!(lines.is_empty());
        let error = error.expect("the frame is refused");
        assert!(
            matches!(error, ConsumerError::Decompress { offset: 0, .. }),
            "{error}"
        );
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(
            source.contains("decompress it first with zstd -d --long=31"),
            "{source}"
        );
    }

    proptest! {
        /// Whatever the text and wherever the gzip file is cut, the lines returned are whole
        /// lines of the original, and a cut file is always an error.
        #[test]
        fn cut_gzip_never_gives_a_partial_line(
            lines in prop::collection::vec("[a-z{}\":,]{0,40}", 1..40),
            cut_share in 0.0f64..1.0,
        ) {
            let text = lines.join("\n").into_bytes();
            let expected = plain_lines(&[&text], 64);
            let bytes = gzip(&[&text]);
            let cut = 4 + ((bytes.len() - 4) as f64 * cut_share) as usize;
            let offset = check_damaged(&bytes[..cut], &expected, Compression::Gzip);
            prop_assert_eq!(offset, Some(cut as u64));
        }
    }
}
