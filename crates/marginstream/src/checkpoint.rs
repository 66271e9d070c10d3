//! The checkpoint of `marginstream run`: every owned partition's engine state (windows,
//! dedup index, counters, watermark) and the next offset to read, in one file, with the
//! tagging rules and rates the states were built under.
//!
//! Written atomically: to `checkpoint.bin.tmp`, fsync, rename over `checkpoint.bin`, fsync
//! the directory. A crash at any moment leaves either the old or the new file, whole. The
//! offsets in it are committed to Kafka only after the rename is durable.
//!
//! Layout (little-endian), version 2:
//!
//! ```text
//! magic "MSCKPT" 0x00 0x01 | u32 format version | topic (u32 length, bytes)
//! | group id (u32 length, bytes) | u64 written at (Unix ms)
//! | rules and rates (u32 length, canonical text, see crate::fingerprint) | u32 partitions
//! | per partition: i32 partition, i64 next offset, u8 flags (1: rebuilt, 2: history
//!   truncated), u64 length, engine bytes
//! | u64 XXH3-64 of everything before it
//! ```
//!
//! Version 1 (before the rules and rates were recorded) has no rules text and a flags byte
//! of 0 or 1; it is still read, as built under unknown rules (so it is restated, or
//! refused, by `ledger.on_rules_change`).
//!
//! A file whose checksum, magic, version, topic, group or engine configuration does not
//! match is refused whole, with the reason: never half-loaded.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use marginstream_aggregator::{Engine, EngineConfig};
use marginstream_consumer::{Offset, Partition};

const MAGIC: &[u8; 8] = b"MSCKPT\x00\x01";
const VERSION: u32 = 2;
/// The version before the rules and rates were recorded.
const VERSION_WITHOUT_RULES: u32 = 1;
/// The flag bit of a partition read to its end once.
const FLAG_REBUILT: u8 = 1;
/// The flag bit of a partition whose state misses history the broker no longer held.
const FLAG_TRUNCATED: u8 = 2;
/// The checkpoint's file name in `state.dir`.
pub const FILE_NAME: &str = "checkpoint.bin";
/// The lock file that keeps a second instance out of the same directory.
pub const LOCK_NAME: &str = "LOCK";

/// One partition's state as checkpointed.
#[derive(Debug)]
pub struct PartitionCheckpoint {
    /// The partition.
    pub partition: Partition,
    /// The next offset to read: every message before it is in `engine`.
    pub next: Offset,
    /// Whether the partition had been read to its end once (its gauges were shown).
    pub rebuilt: bool,
    /// Whether the state was built over a gap: history the broker no longer held when it
    /// was read (`ledger.accept_truncated_history`).
    pub truncated: bool,
    /// Its state.
    pub engine: Engine,
}

/// A restored checkpoint.
#[derive(Debug)]
pub struct Restored {
    /// The partitions.
    pub partitions: Vec<PartitionCheckpoint>,
    /// When it was written.
    pub written_at: SystemTime,
    /// Its size in bytes.
    pub bytes: u64,
    /// The canonical text of the rules and rates the states were built under; `None` for a
    /// checkpoint of format version 1, which did not record them.
    pub rules: Option<String>,
}

/// One partition to encode.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The partition.
    pub partition: Partition,
    /// The next offset to read.
    pub next: Offset,
    /// Read to its end once.
    pub rebuilt: bool,
    /// Built over missing history.
    pub truncated: bool,
    /// Its state.
    pub engine: &'a Engine,
}

/// Where one partition's engine bytes are in an encoded checkpoint (the state topic
/// publishes exactly these bytes, without encoding the engine twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPart {
    /// The partition.
    pub partition: Partition,
    /// Its next offset.
    pub next: Offset,
    /// Built over missing history.
    pub truncated: bool,
    /// The engine's bytes in the checkpoint buffer.
    pub range: Range<usize>,
}

/// Encodes a checkpoint of `partitions` built under `rules` (canonical text), stamped
/// `written_at` (the caller reads the clock). Returns where each engine's bytes are in `out`.
pub fn encode<'a>(
    topic: &str,
    group_id: &str,
    written_at: SystemTime,
    rules: &str,
    partitions: impl Iterator<Item = Part<'a>>,
    out: &mut Vec<u8>,
) -> Vec<EncodedPart> {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for text in [topic, group_id] {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let now_ms = written_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    out.extend_from_slice(&now_ms.to_le_bytes());
    out.extend_from_slice(&(rules.len() as u32).to_le_bytes());
    out.extend_from_slice(rules.as_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut encoded = Vec::new();
    for part in partitions {
        out.extend_from_slice(&part.partition.0.to_le_bytes());
        out.extend_from_slice(&part.next.0.to_le_bytes());
        let mut flags = 0;
        if part.rebuilt {
            flags |= FLAG_REBUILT;
        }
        if part.truncated {
            flags |= FLAG_TRUNCATED;
        }
        out.push(flags);
        let length_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        let start = out.len();
        part.engine.encode(out);
        let length = (out.len() - start) as u64;
        out[length_at..length_at + 8].copy_from_slice(&length.to_le_bytes());
        encoded.push(EncodedPart {
            partition: part.partition,
            next: part.next,
            truncated: part.truncated,
            range: start..out.len(),
        });
    }
    let count = encoded.len() as u32;
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    let checksum = xxhash_rust::xxh3::xxh3_64(out);
    out.extend_from_slice(&checksum.to_le_bytes());
    encoded
}

/// A reader over the checkpoint bytes that fails, never panics, on short input.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        if self.bytes.len() < n {
            bail!("truncated");
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn text(&mut self) -> anyhow::Result<&'a str> {
        let length = self.u32()? as usize;
        Ok(std::str::from_utf8(self.take(length)?)?)
    }
}

/// Decodes a checkpoint, refusing it whole on any mismatch.
pub fn decode(
    bytes: &[u8],
    topic: &str,
    group_id: &str,
    config: &EngineConfig,
) -> anyhow::Result<Restored> {
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        bail!("not a marginstream checkpoint (wrong magic number)");
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 8);
    let expected = u64::from_le_bytes(checksum.try_into().expect("eight bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != expected {
        bail!("corrupt: the checksum does not match its contents");
    }
    let mut cursor = Cursor {
        bytes: &body[MAGIC.len()..],
    };
    let version = cursor.u32()?;
    if version != VERSION && version != VERSION_WITHOUT_RULES {
        bail!("format version {version}, this build reads versions {VERSION_WITHOUT_RULES} and {VERSION}");
    }
    let file_topic = cursor.text()?;
    let file_group = cursor.text()?;
    if file_topic != topic || file_group != group_id {
        bail!(
            "written for topic {file_topic:?} and group {file_group:?}, but this instance reads topic {topic:?} in group {group_id:?}"
        );
    }
    let written_at = UNIX_EPOCH + Duration::from_millis(cursor.u64()?);
    let rules = if version == VERSION {
        Some(cursor.text()?.to_owned())
    } else {
        None
    };
    let count = cursor.u32()?;
    let mut partitions = Vec::new();
    for _ in 0..count {
        let partition = Partition(i32::from_le_bytes(cursor.take(4)?.try_into()?));
        let next = Offset(i64::from_le_bytes(cursor.take(8)?.try_into()?));
        let flags = cursor.take(1)?[0];
        let known = if version == VERSION {
            FLAG_REBUILT | FLAG_TRUNCATED
        } else {
            FLAG_REBUILT
        };
        if flags & !known != 0 {
            bail!("partition {}: unknown flags {flags:#04x}", partition.0);
        }
        let length = usize::try_from(cursor.u64()?)?;
        let engine_bytes = cursor.take(length)?;
        if partitions
            .iter()
            .any(|p: &PartitionCheckpoint| p.partition == partition)
        {
            bail!("partition {} is listed twice", partition.0);
        }
        let engine = Engine::decode(config, engine_bytes)
            .with_context(|| format!("partition {}", partition.0))?;
        partitions.push(PartitionCheckpoint {
            partition,
            next,
            rebuilt: flags & FLAG_REBUILT != 0,
            truncated: flags & FLAG_TRUNCATED != 0,
            engine,
        });
    }
    if !cursor.bytes.is_empty() {
        bail!(
            "{} unexpected bytes after the last partition",
            cursor.bytes.len()
        );
    }
    Ok(Restored {
        partitions,
        written_at,
        bytes: bytes.len() as u64,
        rules,
    })
}

/// The state directory: its lock and its checkpoint file.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Held for the process's life: a second instance on the same directory is refused.
    _lock: File,
}

impl StateDir {
    /// Creates the directory if needed and locks it.
    pub fn open(dir: &Path) -> anyhow::Result<StateDir> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state.dir {}", dir.display()))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "state.dir {} is in use by another marginstream process (one instance per directory)",
                dir.display()
            );
        }
        Ok(StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// Returns the checkpoint file's path.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Reads and decodes the checkpoint, if there is one.
    pub fn restore(
        &self,
        topic: &str,
        group_id: &str,
        config: &EngineConfig,
    ) -> anyhow::Result<Option<Restored>> {
        let path = self.checkpoint_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        decode(&bytes, topic, group_id, config)
            .map(Some)
            .with_context(|| {
                format!(
                    "refusing the checkpoint {}; move it away to rebuild the state from the topic",
                    path.display()
                )
            })
    }

    /// Writes `bytes` as the checkpoint, atomically and durably; returns how long it took.
    pub fn write(&self, bytes: &[u8]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let path = self.checkpoint_path();
        let temporary = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = File::create(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        drop(file);
        fs::rename(&temporary, &path).with_context(|| {
            format!(
                "cannot rename {} over {}",
                temporary.display(),
                path.display()
            )
        })?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync the directory {}", self.dir.display()))?;
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EngineConfig {
        EngineConfig::default()
    }

    fn sample() -> Vec<u8> {
        let engine = Engine::new(&config()).expect("the default configuration is valid");
        let mut out = Vec::new();
        let parts = [
            Part {
                partition: Partition(3),
                next: Offset(42),
                rebuilt: true,
                truncated: false,
                engine: &engine,
            },
            Part {
                partition: Partition(5),
                next: Offset(7),
                rebuilt: false,
                truncated: true,
                engine: &engine,
            },
        ];
        let encoded = encode(
            "cel.events",
            "marginstream",
            SystemTime::now(),
            "rules text",
            parts.into_iter(),
            &mut out,
        );
        let mut alone = Vec::new();
        engine.encode(&mut alone);
        for part in &encoded {
            assert_eq!(
                out[part.range.clone()],
                alone[..],
                "the ranges are the engines' bytes"
            );
        }
        out
    }

    /// Shows a checkpoint decoding to what was encoded, its rules text and flags included.
    #[test]
    fn round_trip() {
        let restored = decode(&sample(), "cel.events", "marginstream", &config())
            .expect("a fresh checkpoint decodes");
        assert_eq!(restored.partitions.len(), 2);
        assert_eq!(restored.partitions[0].partition, Partition(3));
        assert_eq!(restored.partitions[0].next, Offset(42));
        assert!(restored.partitions[0].rebuilt);
        assert!(!restored.partitions[0].truncated);
        assert!(!restored.partitions[1].rebuilt);
        assert!(restored.partitions[1].truncated);
        assert_eq!(restored.rules.as_deref(), Some("rules text"));
    }

    /// Shows that a checkpoint of format version 1 (before the rules were recorded) is read,
    /// with no rules text, so that the caller restates or refuses it.
    #[test]
    fn version_1_is_read_without_rules() {
        let engine = Engine::new(&config()).expect("the default configuration is valid");
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION_WITHOUT_RULES.to_le_bytes());
        for text in ["cel.events", "marginstream"] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&2i32.to_le_bytes());
        out.extend_from_slice(&9i64.to_le_bytes());
        out.push(1);
        let mut bytes = Vec::new();
        engine.encode(&mut bytes);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
        let checksum = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        let restored = decode(&out, "cel.events", "marginstream", &config())
            .expect("a version 1 checkpoint decodes");
        assert_eq!(restored.rules, None);
        assert_eq!(restored.partitions[0].next, Offset(9));
        assert!(restored.partitions[0].rebuilt);
    }

    #[test]
    fn every_corruption_and_truncation_is_refused() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], "cel.events", "marginstream", &config()).is_err());
        }
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x40;
            assert!(
                decode(&corrupt, "cel.events", "marginstream", &config()).is_err(),
                "a flipped byte at {at} must be refused"
            );
        }
    }

    #[test]
    fn foreign_checkpoints_are_refused_with_the_reason() {
        let error = decode(&sample(), "other.topic", "marginstream", &config())
            .expect_err("another topic's checkpoint is refused");
        assert!(format!("{error:#}").contains("other.topic"), "{error:#}");
        let other = EngineConfig {
            lifetime: false,
            ..config()
        };
        assert!(decode(&sample(), "cel.events", "marginstream", &other).is_err());
    }

    #[test]
    fn atomic_write_and_lock() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = StateDir::open(dir.path()).expect("the directory opens");
        assert!(state
            .restore("cel.events", "marginstream", &config())
            .expect("no checkpoint is not an error")
            .is_none());
        state.write(&sample()).expect("the checkpoint is written");
        assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
        let restored = state
            .restore("cel.events", "marginstream", &config())
            .expect("it restores")
            .expect("it exists");
        assert_eq!(restored.partitions.len(), 2);
        assert!(
            StateDir::open(dir.path()).is_err(),
            "a second instance is refused"
        );
    }
}
