//! Document versions as storage sees them: the rows every engine keeps per room
//! ([`VersionMeta`] plus an opaque data blob), and the engine-neutral rules over them that every
//! engine applies the same way: retention ([`retire`]), which rows may go ([`removable`]) and
//! which rows rebuild a version ([`chain`]), plus the one row codec ([`encode_meta`]).
//!
//! A version's data is either the whole document (a "full" row) or a diff against the row
//! before it (`base`): the chain of diffs back to the nearest full row rebuilds it. Rows a
//! listed version still needs stay stored, unlisted, after retention dropped them from the
//! listing. Deliberately not here: yrs (the room encodes and applies the bytes), engines.

use serde::{Deserialize, Serialize};

/// Why a version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionKind {
    /// Taken by the room while it is edited (`--version-every-secs`).
    Auto,
    /// Asked for (`POST /api/rooms/{room}/versions`); never removed by retention.
    Explicit,
    /// The state just before a restore (so a restore can be undone).
    PreRestore,
}

/// One stored version row, without its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Per room, from 1, strictly increasing, never reused while the room lives.
    pub id: u64,
    /// The room's durable seq the version shows.
    pub seq: u64,
    pub created_at_ms: u64,
    pub kind: VersionKind,
    pub label: Option<String>,
    /// Bytes of the row's data.
    pub bytes: u64,
    /// `Some(id)`: the data is a diff against row `id` (the row before it); `None`: full.
    pub base: Option<u64>,
    /// Bytes of the diffs from the nearest full row up to and including this one (0 for full).
    pub chain_bytes: u64,
    /// Bytes of that nearest full row.
    pub full_bytes: u64,
    /// The document's state vector at this version (v1), what the next diff starts from.
    pub state_vector: Vec<u8>,
    /// False once retention dropped it: kept only as the base of a listed later version.
    pub listed: bool,
}

/// A version to store; the engine assigns its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    pub seq: u64,
    pub created_at_ms: u64,
    pub kind: VersionKind,
    pub label: Option<String>,
    /// Must be the room's newest row when `Some` (else the engine refuses): a diff is only
    /// meaningful against the state it was computed from.
    pub base: Option<u64>,
    pub chain_bytes: u64,
    pub full_bytes: u64,
    pub state_vector: Vec<u8>,
    pub data: Vec<u8>,
}

impl NewVersion {
    /// The row this version becomes under `id`.
    pub fn meta(&self, id: u64) -> VersionMeta {
        VersionMeta {
            id,
            seq: self.seq,
            created_at_ms: self.created_at_ms,
            kind: self.kind,
            label: self.label.clone(),
            bytes: self.data.len() as u64,
            base: self.base,
            chain_bytes: self.chain_bytes,
            full_bytes: self.full_bytes,
            state_vector: self.state_vector.clone(),
            listed: true,
        }
    }
}

/// Which automatic versions a room keeps (`--keep-versions`, `--keep-versions-days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Automatic and pre-restore versions kept, newest first (0: no count limit).
    pub keep: usize,
    /// Automatic and pre-restore versions older than this are dropped (`None`: no age limit).
    pub max_age_ms: Option<u64>,
    /// The engine applies the policy as of this time.
    pub now_ms: u64,
}

impl Retention {
    /// Keeps everything.
    pub const ALL: Retention = Retention {
        keep: 0,
        max_age_ms: None,
        now_ms: 0,
    };
}

/// Ids of the listed versions `policy` drops. `metas` in ascending id. Explicit versions and
/// the newest version of the room are never dropped.
pub fn retire(metas: &[VersionMeta], policy: &Retention) -> Vec<u64> {
    let newest = metas.last().map(|m| m.id);
    let mut out = Vec::new();
    let automatic = metas
        .iter()
        .rev()
        .filter(|m| m.listed && m.kind != VersionKind::Explicit);
    for (rank, m) in automatic.enumerate() {
        if Some(m.id) == newest {
            continue;
        }
        let too_many = policy.keep > 0 && rank >= policy.keep;
        let too_old = policy
            .max_age_ms
            .is_some_and(|age| policy.now_ms.saturating_sub(m.created_at_ms) > age);
        if too_many || too_old {
            out.push(m.id);
        }
    }
    out.sort_unstable();
    out
}

/// Ids of the rows no listed version needs any more (unlisted, and not on the chain of a
/// listed later row). `metas` in ascending id.
pub fn removable(metas: &[VersionMeta]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut needed = false;
    for m in metas.iter().rev() {
        let keep = m.listed || needed;
        if !keep {
            out.push(m.id);
        }
        needed = keep && m.base.is_some();
    }
    out.reverse();
    out
}

/// The rows that rebuild version `id`, in the order their data is applied (the full row
/// first). `None` when `id` is not stored or its chain is broken. `metas` in ascending id.
pub fn chain(metas: &[VersionMeta], id: u64) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut at = id;
    loop {
        let m = metas.iter().find(|m| m.id == at)?;
        out.push(m.id);
        match m.base {
            None => break,
            Some(base) if base < at => at = base,
            Some(_) => return None,
        }
    }
    out.reverse();
    Some(out)
}

/// Leading byte of an encoded [`VersionMeta`].
const META_V1: u8 = 1;

/// A row's metadata as stored by every engine: `[1] ++ JSON`.
pub fn encode_meta(meta: &VersionMeta) -> Vec<u8> {
    let mut out = vec![META_V1];
    // Serializing a struct of plain fields into a Vec cannot fail.
    if serde_json::to_writer(&mut out, meta).is_err() {
        out.truncate(1);
    }
    out
}

/// Inverse of [`encode_meta`]; `None` for a row this code did not write.
pub fn decode_meta(bytes: &[u8]) -> Option<VersionMeta> {
    match bytes.split_first() {
        Some((&META_V1, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: u64, kind: VersionKind, base: Option<u64>, listed: bool, at: u64) -> VersionMeta {
        VersionMeta {
            id,
            seq: id * 10,
            created_at_ms: at,
            kind,
            label: None,
            bytes: 1,
            base,
            chain_bytes: 0,
            full_bytes: 1,
            state_vector: vec![0],
            listed,
        }
    }

    #[test]
    fn retention_keeps_explicit_and_the_newest_and_drops_by_count_and_age() {
        use VersionKind::*;
        let metas = vec![
            row(1, Auto, None, true, 0),
            row(2, Explicit, Some(1), true, 0),
            row(3, Auto, Some(2), true, 500),
            row(4, PreRestore, Some(3), true, 900),
            row(5, Auto, Some(4), true, 1000),
        ];
        let by_count = Retention {
            keep: 2,
            max_age_ms: None,
            now_ms: 1000,
        };
        assert_eq!(retire(&metas, &by_count), vec![1, 3]);
        let by_age = Retention {
            keep: 0,
            max_age_ms: Some(200),
            now_ms: 1000,
        };
        assert_eq!(retire(&metas, &by_age), vec![1, 3]);
        let old = Retention {
            keep: 0,
            max_age_ms: Some(1),
            now_ms: 5000,
        };
        assert_eq!(retire(&metas, &old), vec![1, 3, 4], "the newest stays");
        assert!(retire(&metas, &Retention::ALL).is_empty());
    }

    #[test]
    fn unlisted_rows_stay_while_a_listed_row_chains_through_them() {
        use VersionKind::*;
        let metas = vec![
            row(1, Auto, None, false, 0),
            row(2, Auto, Some(1), false, 0),
            row(3, Auto, None, false, 0),
            row(4, Auto, Some(3), true, 0),
            row(5, Auto, Some(4), false, 0),
            row(6, Auto, None, true, 0),
        ];
        assert_eq!(removable(&metas), vec![1, 2, 5]);
        assert_eq!(chain(&metas, 4), Some(vec![3, 4]));
        assert_eq!(chain(&metas, 6), Some(vec![6]));
        assert_eq!(chain(&metas, 7), None);
        assert_eq!(chain(&metas[1..], 2), None, "broken chain");
    }

    #[test]
    fn meta_rows_round_trip() {
        let m = row(3, VersionKind::PreRestore, Some(2), true, 7);
        assert_eq!(decode_meta(&encode_meta(&m)), Some(m));
        assert_eq!(decode_meta(b"x"), None);
        assert_eq!(decode_meta(&[]), None);
    }
}
