//! The records of the state topic (contract section 10): each owned partition's state,
//! published with every checkpoint, so that any process can restore any partition.
//!
//! A *snapshot* is one ledger partition's engine bytes (`Engine::encode`, the same bytes the
//! local checkpoint holds) and the next offset to read, cut into *pieces* of at most
//! [`PIECE_BYTES`] (below Kafka's default `message.max.bytes` of 1 MB), followed by a
//! *manifest* written only once every piece is acknowledged. The manifest marks the snapshot
//! complete: it names the ledger topic, the group, the partition and the offset, the engine
//! configuration and the rules and rates the state was built under, the piece count, the
//! length and an XXH3-64 of the whole, and carries its own XXH3-64. A snapshot without its
//! manifest (a writer that died), with a piece missing, a checksum that does not match, or
//! built under another configuration, is never restored: the scan passes over it to the
//! previous complete one (or the caller rebuilds), and says why.
//!
//! Every record has a key of its own, `<group length>:<group>/<partition>/<snapshot id>/m`
//! for the manifest and `.../p<index>` for a piece, so that a compacted topic keeps each one
//! until the writer tombstones it; a writer keeps the newest two complete snapshots of a
//! partition and tombstones the others (the manifest first, so a reader never finds a
//! manifest whose pieces are gone). Ledger partition `p` lives in state partition
//! `p mod n`, `n` being the state topic's partition count (the ledger's when `run` creates
//! it), so a restore reads one state partition, not the whole topic.
//!
//! Values (little-endian):
//!
//! ```text
//! piece:    "MSSTATE" 0x01 | 'P' | u64 snapshot id | u32 index | bytes
//! manifest: "MSSTATE" 0x01 | 'M' | u32 version | ledger topic, group (u32 length, bytes)
//!           | i32 partition | u64 snapshot id | i64 next offset | u8 flags (1: truncated)
//!           | u64 written at (Unix ms) | engine configuration, rules and rates (u32
//!           length, text) | u32 pieces | u64 length | u64 XXH3-64 of the whole
//!           | u64 XXH3-64 of the manifest before it
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::bail;
use marginstream_aggregator::{ClockMode, EngineConfig};
use marginstream_consumer::{Offset, Partition};

/// The most engine bytes in one piece: 512 KiB, half of Kafka's default `message.max.bytes`
/// (1 MB, the broker's limit on a record batch) so that a piece with its key, header and
/// batch overhead always fits, whatever the broker's batching.
pub const PIECE_BYTES: usize = 512 * 1024;

const MAGIC: &[u8; 8] = b"MSSTATE\x01";
const KIND_PIECE: u8 = b'P';
const KIND_MANIFEST: u8 = b'M';
const MANIFEST_VERSION: u32 = 1;
const FLAG_TRUNCATED: u8 = 1;
/// Bytes of a piece's header: magic, kind, snapshot id, index.
const PIECE_HEADER_BYTES: usize = 8 + 1 + 8 + 4;

/// A snapshot's identity, unique among the snapshots of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(pub u64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl SnapshotId {
    /// Returns a new id: the wall clock's nanoseconds mixed with the process id and the
    /// partition, so that two processes never pick the same one.
    pub fn new(partition: Partition, nanos: u128) -> SnapshotId {
        let mut seed = Vec::with_capacity(24);
        seed.extend_from_slice(&nanos.to_le_bytes());
        seed.extend_from_slice(&std::process::id().to_le_bytes());
        seed.extend_from_slice(&partition.0.to_le_bytes());
        SnapshotId(xxhash_rust::xxh3::xxh3_64(&seed))
    }
}

/// What a record of the state topic is, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The manifest.
    Manifest,
    /// Piece `n`.
    Piece(u32),
}

/// Returns the key of a record of `group`'s snapshot `snapshot` of ledger partition
/// `partition`.
pub fn key(group: &str, partition: Partition, snapshot: SnapshotId, kind: Kind) -> Vec<u8> {
    let tail = match kind {
        Kind::Manifest => "m".to_owned(),
        Kind::Piece(index) => format!("p{index}"),
    };
    format!("{}:{group}/{}/{snapshot}/{tail}", group.len(), partition.0).into_bytes()
}

/// Reads a key; `None` for a key of another group or not of this format.
pub fn parse_key(key: &[u8], group: &str) -> Option<(Partition, SnapshotId, Kind)> {
    let text = std::str::from_utf8(key).ok()?;
    let (length, rest) = text.split_once(':')?;
    if length.parse::<usize>().ok()? != group.len() {
        return None;
    }
    let rest = rest.strip_prefix(group)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let partition = Partition(parts.next()?.parse().ok()?);
    let snapshot = SnapshotId(u64::from_str_radix(parts.next()?, 16).ok()?);
    let kind = match parts.next()? {
        "m" => Kind::Manifest,
        piece => Kind::Piece(piece.strip_prefix('p')?.parse().ok()?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some((partition, snapshot, kind))
}

/// The text of an engine configuration as a snapshot records it: what `Engine::decode`
/// checks (bucket, windows as labelled, lifetime window, clock, dedup horizon), so that a
/// snapshot of another configuration is recognised before its pieces are joined.
pub fn engine_text(config: &EngineConfig) -> String {
    let bucket = config.bucket.seconds().max(1);
    let longest = config.windows.iter().map(|w| w.seconds() / bucket).max();
    let horizon = match &config.dedup_horizon {
        Some(horizon) => (horizon.seconds() + bucket - 1) / bucket,
        None => longest.unwrap_or(31 * 86_400 / bucket) + 1,
    };
    let windows: Vec<&str> = config.windows.iter().map(|w| w.as_str()).collect();
    format!(
        "bucket {}s; windows [{}]; lifetime {}; clock {}; dedup horizon {horizon} buckets",
        config.bucket.seconds(),
        windows.join(", "),
        if config.lifetime { "on" } else { "off" },
        match config.clock {
            ClockMode::Event => "event",
            ClockMode::Wall => "wall",
        }
    )
}

/// A snapshot's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The ledger topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The ledger partition.
    pub partition: Partition,
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The next offset to read: every message before it is in the state.
    pub next: Offset,
    /// Built over history the broker no longer held.
    pub truncated: bool,
    /// When it was written (Unix milliseconds).
    pub written_at_ms: u64,
    /// [`engine_text`] of the configuration it was built under.
    pub engine: String,
    /// The rules and rates (`crate::fingerprint`) it was built under.
    pub rules: String,
    /// Its piece count.
    pub pieces: u32,
    /// The length of the engine bytes.
    pub length: u64,
    /// XXH3-64 of the engine bytes.
    pub checksum: u64,
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A reader that fails, never panics, on short input.
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

    fn array<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        Ok(self.take(N)?.try_into()?)
    }

    fn text(&mut self) -> anyhow::Result<&'a str> {
        let length = u32::from_le_bytes(self.array()?) as usize;
        Ok(std::str::from_utf8(self.take(length)?)?)
    }
}

impl Manifest {
    /// Returns the manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.engine.len() + self.rules.len());
        out.extend_from_slice(MAGIC);
        out.push(KIND_MANIFEST);
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        put_text(&mut out, &self.topic);
        put_text(&mut out, &self.group);
        out.extend_from_slice(&self.partition.0.to_le_bytes());
        out.extend_from_slice(&self.snapshot.0.to_le_bytes());
        out.extend_from_slice(&self.next.0.to_le_bytes());
        out.push(if self.truncated { FLAG_TRUNCATED } else { 0 });
        out.extend_from_slice(&self.written_at_ms.to_le_bytes());
        put_text(&mut out, &self.engine);
        put_text(&mut out, &self.rules);
        out.extend_from_slice(&self.pieces.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.checksum.to_le_bytes());
        let own = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&own.to_le_bytes());
        out
    }

    /// Reads a manifest, refusing any damage (its own checksum covers every byte).
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Manifest> {
        if bytes.len() < MAGIC.len() + 1 + 8 || &bytes[..MAGIC.len()] != MAGIC {
            bail!("not a manifest of this format (wrong magic number)");
        }
        let (body, own) = bytes.split_at(bytes.len() - 8);
        let own = u64::from_le_bytes(own.try_into().expect("eight bytes"));
        if xxhash_rust::xxh3::xxh3_64(body) != own {
            bail!("the manifest's checksum does not match its contents");
        }
        let mut cursor = Cursor {
            bytes: &body[MAGIC.len()..],
        };
        if cursor.take(1)?[0] != KIND_MANIFEST {
            bail!("not a manifest");
        }
        let version = u32::from_le_bytes(cursor.array()?);
        if version != MANIFEST_VERSION {
            bail!("manifest version {version}, this build reads version {MANIFEST_VERSION}");
        }
        let manifest = Manifest {
            topic: cursor.text()?.to_owned(),
            group: cursor.text()?.to_owned(),
            partition: Partition(i32::from_le_bytes(cursor.array()?)),
            snapshot: SnapshotId(u64::from_le_bytes(cursor.array()?)),
            next: Offset(i64::from_le_bytes(cursor.array()?)),
            truncated: match cursor.take(1)?[0] {
                0 => false,
                FLAG_TRUNCATED => true,
                other => bail!("unknown flags {other:#04x}"),
            },
            written_at_ms: u64::from_le_bytes(cursor.array()?),
            engine: cursor.text()?.to_owned(),
            rules: cursor.text()?.to_owned(),
            pieces: u32::from_le_bytes(cursor.array()?),
            length: u64::from_le_bytes(cursor.array()?),
            checksum: u64::from_le_bytes(cursor.array()?),
        };
        if !cursor.bytes.is_empty() {
            bail!("{} unexpected bytes at the end", cursor.bytes.len());
        }
        Ok(manifest)
    }
}

/// Returns the number of pieces of `length` engine bytes (at least one).
pub fn piece_count(length: usize) -> u32 {
    length.div_ceil(PIECE_BYTES).max(1) as u32
}

/// Writes piece `index` of `bytes` (its slice of at most [`PIECE_BYTES`]) into `out`.
pub fn encode_piece(snapshot: SnapshotId, index: u32, bytes: &[u8], out: &mut Vec<u8>) {
    let start = (index as usize * PIECE_BYTES).min(bytes.len());
    let end = (start + PIECE_BYTES).min(bytes.len());
    out.clear();
    out.reserve(PIECE_HEADER_BYTES + end - start);
    out.extend_from_slice(MAGIC);
    out.push(KIND_PIECE);
    out.extend_from_slice(&snapshot.0.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&bytes[start..end]);
}

/// Returns the data of a piece value after checking its header against its key.
fn piece_data(value: &[u8], snapshot: SnapshotId, index: u32) -> anyhow::Result<&[u8]> {
    let mut cursor = Cursor { bytes: value };
    if cursor.take(MAGIC.len())? != MAGIC || cursor.take(1)?[0] != KIND_PIECE {
        bail!("piece {index} is not a piece of this format");
    }
    let id = SnapshotId(u64::from_le_bytes(cursor.array()?));
    let at = u32::from_le_bytes(cursor.array()?);
    if id != snapshot || at != index {
        bail!("piece {index} says it is piece {at} of snapshot {id}");
    }
    Ok(cursor.bytes)
}

/// Why a snapshot was not restored: the `reason` label of
/// `marginstream_state_snapshots_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A piece or the manifest is missing (a writer that died mid-way, or records lost).
    Incomplete,
    /// A checksum, a length or the format does not match.
    Corrupt,
    /// Written for another topic, group or partition, under another engine configuration,
    /// or under other rules and rates.
    Foreign,
}

impl Refusal {
    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Incomplete => "incomplete",
            Refusal::Corrupt => "corrupt",
            Refusal::Foreign => "foreign",
        }
    }
}

/// A snapshot passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The class of reason.
    pub reason: Refusal,
    /// What exactly was wrong.
    pub detail: String,
    /// Built under other rules and rates (only): their canonical text.
    pub other_rules: Option<String>,
}

/// A snapshot whose manifest and pieces all check out, with its engine bytes joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its manifest.
    pub manifest: Manifest,
    /// The engine bytes.
    pub bytes: Vec<u8>,
}

/// A snapshot still holding records in the topic, as the writer keeps track of them: the
/// keys to tombstone when it is no longer needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Piece keys to tombstone: `0..pieces`.
    pub pieces: u32,
    /// Complete and of the expected configuration (worth keeping as a fallback).
    pub usable: bool,
}

/// One snapshot's records seen so far.
#[derive(Debug, Default)]
struct Seen {
    manifest: Option<Vec<u8>>,
    pieces: HashMap<u32, Vec<u8>>,
    /// Offset of its latest record (tombstones aside): snapshots are tried newest first.
    last_offset: i64,
    /// The highest piece index seen (for tombstones).
    pieces_seen: u32,
}

/// What the restoring process expects of a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The ledger topic.
    pub topic: &'a str,
    /// The group.
    pub group: &'a str,
    /// [`engine_text`] of the running configuration.
    pub engine: &'a str,
    /// The running rules and rates' canonical text.
    pub rules: &'a str,
}

/// The records of one ledger partition's snapshots, read from its state partition in
/// offset order: pieces and manifests kept, tombstones applied.
#[derive(Debug)]
pub struct Scan {
    group: String,
    partition: Partition,
    /// Keep piece values (a restore); without, only which keys exist (a writer's cleanup).
    keep_values: bool,
    snapshots: BTreeMap<SnapshotId, Seen>,
}

impl Scan {
    /// Starts a scan of `group`'s snapshots of `partition`.
    pub fn new(group: &str, partition: Partition, keep_values: bool) -> Scan {
        Scan {
            group: group.to_owned(),
            partition,
            keep_values,
            snapshots: BTreeMap::new(),
        }
    }

    /// Takes one record (in offset order); records of other groups or partitions, and keys
    /// of no known form, are ignored.
    pub fn feed(&mut self, key: &[u8], value: Option<&[u8]>, offset: i64) {
        let Some((partition, snapshot, kind)) = parse_key(key, &self.group) else {
            return;
        };
        if partition != self.partition {
            return;
        }
        let seen = self.snapshots.entry(snapshot).or_default();
        if value.is_some() {
            seen.last_offset = seen.last_offset.max(offset);
        }
        match (kind, value) {
            (Kind::Manifest, Some(value)) => seen.manifest = Some(value.to_vec()),
            (Kind::Manifest, None) => seen.manifest = None,
            (Kind::Piece(index), Some(value)) => {
                seen.pieces_seen = seen.pieces_seen.max(index.saturating_add(1));
                let kept = if self.keep_values {
                    value.to_vec()
                } else {
                    Vec::new()
                };
                seen.pieces.insert(index, kept);
            }
            (Kind::Piece(index), None) => {
                seen.pieces.remove(&index);
            }
        }
        if seen.manifest.is_none() && seen.pieces.is_empty() {
            self.snapshots.remove(&snapshot);
        }
    }

    /// Returns every snapshot still holding records, oldest first, for the writer's
    /// cleanup: `usable` when its manifest reads and matches `expected` (its pieces are not
    /// checked without their values).
    pub fn live(&self, expected: &Expected<'_>) -> Vec<Live> {
        let mut live: Vec<(i64, Live)> = self
            .snapshots
            .iter()
            .map(|(snapshot, seen)| {
                let manifest = seen
                    .manifest
                    .as_deref()
                    .and_then(|bytes| Manifest::decode(bytes).ok());
                let usable = manifest.as_ref().is_some_and(|m| {
                    check(m, *snapshot, self.partition, expected).is_ok()
                        && (0..m.pieces).all(|i| seen.pieces.contains_key(&i))
                });
                let pieces = manifest.map_or(0, |m| m.pieces).max(seen.pieces_seen);
                (
                    seen.last_offset,
                    Live {
                        snapshot: *snapshot,
                        pieces,
                        usable,
                    },
                )
            })
            .collect();
        live.sort_by_key(|(offset, _)| *offset);
        live.into_iter().map(|(_, live)| live).collect()
    }

    /// Returns the snapshots newest first (by the offset of their latest record), each
    /// verified against `expected` or refused with the reason. The caller restores the first
    /// verified one whose engine decodes; the ones before it were passed over.
    pub fn candidates(&self, expected: &Expected<'_>) -> Vec<Result<Verified, Refused>> {
        let mut order: Vec<(&SnapshotId, &Seen)> = self.snapshots.iter().collect();
        order.sort_by_key(|(_, seen)| std::cmp::Reverse(seen.last_offset));
        order
            .into_iter()
            .map(|(snapshot, seen)| self.verify(*snapshot, seen, expected))
            .collect()
    }

    fn verify(
        &self,
        snapshot: SnapshotId,
        seen: &Seen,
        expected: &Expected<'_>,
    ) -> Result<Verified, Refused> {
        let refused = |reason, detail: String| Refused {
            snapshot,
            reason,
            detail,
            other_rules: None,
        };
        let Some(bytes) = &seen.manifest else {
            return Err(refused(
                Refusal::Incomplete,
                format!(
                    "{} pieces and no manifest (a writer that stopped mid-way)",
                    seen.pieces.len()
                ),
            ));
        };
        let manifest = Manifest::decode(bytes)
            .map_err(|error| refused(Refusal::Corrupt, format!("manifest: {error:#}")))?;
        if let Err(mut refusal) = check(&manifest, snapshot, self.partition, expected) {
            refusal.snapshot = snapshot;
            return Err(refusal);
        }
        let missing: Vec<u32> = (0..manifest.pieces)
            .filter(|i| !seen.pieces.contains_key(i))
            .collect();
        if !missing.is_empty() {
            return Err(refused(
                Refusal::Incomplete,
                format!(
                    "{} of its {} pieces are missing (first: {})",
                    missing.len(),
                    manifest.pieces,
                    missing[0]
                ),
            ));
        }
        if let Some(extra) = seen.pieces.keys().find(|i| **i >= manifest.pieces) {
            return Err(refused(
                Refusal::Corrupt,
                format!(
                    "piece {extra} beyond the manifest's {} pieces",
                    manifest.pieces
                ),
            ));
        }
        let mut joined = Vec::with_capacity(usize::try_from(manifest.length).unwrap_or(0));
        for index in 0..manifest.pieces {
            let data = piece_data(&seen.pieces[&index], snapshot, index)
                .map_err(|error| refused(Refusal::Corrupt, format!("{error:#}")))?;
            joined.extend_from_slice(data);
        }
        if joined.len() as u64 != manifest.length {
            return Err(refused(
                Refusal::Corrupt,
                format!(
                    "{} bytes in its pieces, {} in its manifest",
                    joined.len(),
                    manifest.length
                ),
            ));
        }
        if xxhash_rust::xxh3::xxh3_64(&joined) != manifest.checksum {
            return Err(refused(
                Refusal::Corrupt,
                "the checksum does not match its pieces".to_owned(),
            ));
        }
        Ok(Verified {
            manifest,
            bytes: joined,
        })
    }
}

/// Checks a manifest against its key and what the restoring process expects.
fn check(
    manifest: &Manifest,
    snapshot: SnapshotId,
    partition: Partition,
    expected: &Expected<'_>,
) -> Result<(), Refused> {
    let foreign = |detail: String| Refused {
        snapshot,
        reason: Refusal::Foreign,
        detail,
        other_rules: None,
    };
    if manifest.snapshot != snapshot || manifest.partition != partition {
        return Err(Refused {
            reason: Refusal::Corrupt,
            ..foreign(format!(
                "the manifest is of partition {} snapshot {}, its key of partition {} snapshot {snapshot}",
                manifest.partition.0, manifest.snapshot, partition.0
            ))
        });
    }
    if manifest.topic != expected.topic || manifest.group != expected.group {
        return Err(foreign(format!(
            "written for topic {:?} and group {:?}",
            manifest.topic, manifest.group
        )));
    }
    if manifest.engine != expected.engine {
        return Err(foreign(format!(
            "built under another configuration ({}; now {})",
            manifest.engine, expected.engine
        )));
    }
    if manifest.rules != expected.rules {
        return Err(Refused {
            other_rules: Some(manifest.rules.clone()),
            ..foreign("built under other tagging rules or rates".to_owned())
        });
    }
    Ok(())
}

/// Returns the manifest of a snapshot of engine bytes `bytes` built as `expected` says.
pub fn manifest_for(
    expected: &Expected<'_>,
    partition: Partition,
    snapshot: SnapshotId,
    next: Offset,
    truncated: bool,
    written_at_ms: u64,
    bytes: &[u8],
) -> Manifest {
    Manifest {
        topic: expected.topic.to_owned(),
        group: expected.group.to_owned(),
        partition,
        snapshot,
        next,
        truncated,
        written_at_ms,
        engine: expected.engine.to_owned(),
        rules: expected.rules.to_owned(),
        pieces: piece_count(bytes.len()),
        length: bytes.len() as u64,
        checksum: xxhash_rust::xxh3::xxh3_64(bytes),
    }
}

/// Returns the state partition of ledger partition `partition` in a state topic of
/// `state_partitions` partitions.
///
/// # Errors
///
/// When the state topic has no partition.
pub fn state_partition(partition: Partition, state_partitions: i32) -> anyhow::Result<i32> {
    if state_partitions < 1 {
        bail!("the state topic has no partition");
    }
    Ok(partition.0.rem_euclid(state_partitions))
}

/// Parses the canonical rules text of a refused snapshot, for naming the changes.
pub fn rules_of(refused: &Refused) -> Option<crate::fingerprint::RulesFingerprint> {
    refused
        .other_rules
        .as_deref()
        .map(crate::fingerprint::RulesFingerprint::from_text)
}

/// Returns the records of a snapshot, keys and values: every piece, then the manifest (the
/// writer produces the manifest only once the pieces are acknowledged; the tests forge
/// snapshots with this).
///
/// # Errors
///
/// When `manifest` does not describe `bytes`.
pub fn records(
    group: &str,
    manifest: &Manifest,
    bytes: &[u8],
) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if manifest.length != bytes.len() as u64 || manifest.pieces != piece_count(bytes.len()) {
        bail!("the manifest does not describe these bytes");
    }
    let mut records = Vec::with_capacity(manifest.pieces as usize + 1);
    for index in 0..manifest.pieces {
        let mut value = Vec::new();
        encode_piece(manifest.snapshot, index, bytes, &mut value);
        records.push((
            key(
                group,
                manifest.partition,
                manifest.snapshot,
                Kind::Piece(index),
            ),
            value,
        ));
    }
    records.push((
        key(group, manifest.partition, manifest.snapshot, Kind::Manifest),
        manifest.encode(),
    ));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "rules A";

    /// Records as read: key and value (`None`: a tombstone).
    type Log = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn expected<'a>(engine: &'a str) -> Expected<'a> {
        Expected {
            topic: "cel.events",
            group: "marginstream",
            engine,
            rules: RULES,
        }
    }

    /// Returns a snapshot's records of `length` bytes, with pieces.
    fn snapshot(
        id: u64,
        next: i64,
        length: usize,
        expected: &Expected<'_>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let bytes: Vec<u8> = (0..length).map(|i| (i * 7 + id as usize) as u8).collect();
        let manifest = manifest_for(
            expected,
            Partition(2),
            SnapshotId(id),
            Offset(next),
            false,
            1,
            &bytes,
        );
        records("marginstream", &manifest, &bytes).expect("the manifest fits")
    }

    fn scan(records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Scan {
        let mut scan = Scan::new("marginstream", Partition(2), true);
        for (offset, (key, value)) in records.iter().enumerate() {
            scan.feed(key, value.as_deref(), offset as i64);
        }
        scan
    }

    fn some(records: Vec<(Vec<u8>, Vec<u8>)>) -> Log {
        records.into_iter().map(|(k, v)| (k, Some(v))).collect()
    }

    /// Shows keys round-tripping, other groups (even ones that are a prefix of this one, or
    /// contain the separator) and foreign keys ignored.
    #[test]
    fn keys_name_group_partition_snapshot_and_kind() {
        let k = key("a/b", Partition(7), SnapshotId(0xabc), Kind::Piece(12));
        assert_eq!(
            parse_key(&k, "a/b"),
            Some((Partition(7), SnapshotId(0xabc), Kind::Piece(12)))
        );
        assert_eq!(parse_key(&k, "a"), None);
        assert_eq!(parse_key(&k, "a/b/7"), None);
        let m = key("g", Partition(0), SnapshotId(1), Kind::Manifest);
        assert_eq!(
            parse_key(&m, "g"),
            Some((Partition(0), SnapshotId(1), Kind::Manifest))
        );
        assert_eq!(parse_key(b"not a key", "g"), None);
    }

    /// Shows a snapshot of several pieces restored exactly, and the newest of two chosen.
    #[test]
    fn the_newest_complete_snapshot_is_restored() {
        let engine = "engine";
        let e = expected(engine);
        let mut log = some(snapshot(1, 100, 3 * PIECE_BYTES + 10, &e));
        log.extend(some(snapshot(2, 200, PIECE_BYTES, &e)));
        let candidates = scan(&log).candidates(&e);
        let first = candidates[0].as_ref().expect("the newest is complete");
        assert_eq!(first.manifest.snapshot, SnapshotId(2));
        assert_eq!(first.manifest.pieces, 1);
        assert_eq!(first.bytes.len(), PIECE_BYTES);
        let second = candidates[1].as_ref().expect("the older is complete");
        assert_eq!(second.manifest.pieces, 4);
        assert_eq!(second.bytes.len(), 3 * PIECE_BYTES + 10);
        assert_eq!(second.bytes[5], 5 * 7 + 1);
    }

    /// Shows a torn snapshot (a piece missing, or no manifest), a corrupt one (a flipped
    /// byte in a piece or in its manifest) and foreign ones (another engine configuration,
    /// other rules) each refused with its reason, the previous complete one coming next.
    #[test]
    fn torn_corrupt_and_foreign_snapshots_are_refused() {
        let engine = "engine";
        let e = expected(engine);
        let good = some(snapshot(1, 100, PIECE_BYTES + 5, &e));
        let cases: Vec<(&str, Log, Refusal)> = vec![
            (
                "a piece missing",
                {
                    let mut s = some(snapshot(2, 200, 2 * PIECE_BYTES + 1, &e));
                    s.remove(1);
                    s
                },
                Refusal::Incomplete,
            ),
            (
                "no manifest",
                {
                    let mut s = some(snapshot(2, 200, 2 * PIECE_BYTES + 1, &e));
                    s.pop();
                    s
                },
                Refusal::Incomplete,
            ),
            (
                "a flipped byte in a piece",
                {
                    let mut s = some(snapshot(2, 200, 2 * PIECE_BYTES + 1, &e));
                    let piece = s[1].1.as_mut().expect("a value");
                    piece[100] ^= 1;
                    s
                },
                Refusal::Corrupt,
            ),
            (
                "a flipped byte in the manifest",
                {
                    let mut s = some(snapshot(2, 200, 100, &e));
                    let manifest = s
                        .last_mut()
                        .expect("a manifest")
                        .1
                        .as_mut()
                        .expect("a value");
                    manifest[30] ^= 1;
                    s
                },
                Refusal::Corrupt,
            ),
            (
                "another engine configuration",
                some(snapshot(2, 200, 100, &expected("other engine"))),
                Refusal::Foreign,
            ),
            (
                "other rules",
                some(snapshot(
                    2,
                    200,
                    100,
                    &Expected {
                        rules: "rules B",
                        ..e
                    },
                )),
                Refusal::Foreign,
            ),
        ];
        for (what, bad, reason) in cases {
            let mut log = good.clone();
            log.extend(bad);
            let candidates = scan(&log).candidates(&e);
            let refused = candidates[0].as_ref().expect_err(what);
            assert_eq!(refused.reason, reason, "{what}: {}", refused.detail);
            assert_eq!(
                refused.other_rules.is_some(),
                what == "other rules",
                "{what}"
            );
            let next = candidates[1]
                .as_ref()
                .expect("the previous one is complete");
            assert_eq!(next.manifest.snapshot, SnapshotId(1), "{what}");
        }
    }

    /// Shows tombstones removing a snapshot (the manifest first), and the writer's view of
    /// what is live.
    #[test]
    fn tombstones_remove_snapshots() {
        let engine = "engine";
        let e = expected(engine);
        let first = snapshot(1, 100, PIECE_BYTES + 5, &e);
        let mut log = some(first.clone());
        log.extend(some(snapshot(2, 200, 10, &e)));
        let mut torn = some(snapshot(3, 300, 2 * PIECE_BYTES, &e));
        torn.pop();
        log.extend(torn);
        // The writer retires snapshot 1: manifest first, then its pieces.
        log.push((first.last().expect("a manifest").0.clone(), None));
        let mut partial = scan(&log);
        let live = partial.live(&e);
        assert_eq!(
            live.iter()
                .map(|l| (l.snapshot.0, l.pieces, l.usable))
                .collect::<Vec<_>>(),
            vec![(1, 2, false), (2, 1, true), (3, 2, false)],
        );
        for (key, _) in &first[..first.len() - 1] {
            partial.feed(key, None, 100);
        }
        let candidates = partial.candidates(&e);
        assert_eq!(candidates.len(), 2, "snapshot 1 is gone");
        assert_eq!(
            candidates[0].as_ref().expect_err("torn").reason,
            Refusal::Incomplete
        );
        assert_eq!(
            candidates[1].as_ref().expect("complete").manifest.snapshot,
            SnapshotId(2)
        );
    }

    /// Shows that every truncation and every flipped byte of a manifest is refused.
    #[test]
    fn every_damage_to_a_manifest_is_refused() {
        let engine = "engine";
        let e = expected(engine);
        let manifest = manifest_for(&e, Partition(1), SnapshotId(9), Offset(5), true, 3, b"abc");
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes).expect("it decodes"), manifest);
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err());
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(Manifest::decode(&bad).is_err(), "a flipped byte at {at}");
        }
    }

    /// Shows the engine text naming what `Engine::decode` checks, with the default dedup
    /// horizon spelled out.
    #[test]
    fn engine_text_resolves_the_dedup_horizon() {
        let default = EngineConfig::default();
        let explicit = EngineConfig {
            dedup_horizon: Some(
                marginstream_model::DurationSpec::parse("721h").expect("a duration"),
            ),
            ..EngineConfig::default()
        };
        assert_eq!(engine_text(&default), engine_text(&explicit));
        assert!(engine_text(&default).contains("windows [24h, 7d, 30d]"));
        let other = EngineConfig {
            lifetime: false,
            ..EngineConfig::default()
        };
        assert_ne!(engine_text(&default), engine_text(&other));
    }

    /// Shows ledger partitions mapped onto fewer state partitions.
    #[test]
    fn partitions_map_onto_the_state_topic() {
        assert_eq!(state_partition(Partition(5), 4).expect("valid"), 1);
        assert_eq!(state_partition(Partition(3), 4).expect("valid"), 3);
        assert!(state_partition(Partition(0), 0).is_err());
    }
}
