//! The recovery points the mount shows, their folder names, and re-reading their list.
//!
//! Each recovery point is the folder `recovery-points/<UTC time>_<ID prefix>`
//! (`2026-12-08T00:21:44Z_3fa2c1d0`), so `ls` lists them oldest first. The list is read again
//! when `recovery-points/` is listed, and at most every [`REFRESH`] otherwise (a lookup of a
//! name not in it, `latest`, `hosts/`, `tags/`), so a backup made while mounted shows up
//! without remounting; only new recovery points are read, each once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::RecoveryPointId;
use ferry_repo::Repository;

/// How old the list may get before a lookup reads it again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// One recovery point in the mount.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: RecoveryPointId,
    pub rp: RecoveryPoint,
    /// Its folder's name under `recovery-points/`.
    pub name: Vec<u8>,
}

/// The recovery points, oldest first, and when they were listed.
#[derive(Debug)]
pub struct Points {
    pub list: Vec<Point>,
    /// Only these (the command line's choice), or every recovery point.
    only: Option<HashSet<RecoveryPointId>>,
    read_at: Option<Instant>,
    /// Recovery points read before (damaged ones too, as `None`), so a refresh reads only new ones.
    known: HashMap<RecoveryPointId, Option<RecoveryPoint>>,
}

/// The folder name of a recovery point: its time in UTC and the first 8 digits of its ID.
pub fn folder_name(id: &RecoveryPointId, rp: &RecoveryPoint) -> Vec<u8> {
    let time = chrono::DateTime::parse_from_rfc3339(&rp.time).map_or_else(
        |_| safe_name(rp.time.as_bytes()).into_iter().map(char::from).collect(),
        |t| t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    format!("{time}_{}", id.short()).into_bytes()
}

/// A host or tag as a folder name: `/` and NUL become `_`; empty, `.` and `..` become `_`.
pub fn safe_name(name: &[u8]) -> Vec<u8> {
    if name.is_empty() || name == b"." || name == b".." {
        return b"_".to_vec();
    }
    name.iter().map(|&b| if b == b'/' || b == 0 { b'_' } else { b }).collect()
}

impl Points {
    pub fn new(only: Option<HashSet<RecoveryPointId>>) -> Self {
        Points { list: Vec::new(), only, read_at: None, known: HashMap::new() }
    }

    /// Whether the list is older than [`REFRESH`] (or was never read).
    pub fn stale(&self) -> bool {
        self.read_at.is_none_or(|t| t.elapsed() >= REFRESH)
    }

    /// Reads the list again: the index first (a new recovery point's trees are in index files
    /// written before it), then the recovery points not read before. Recovery points deleted
    /// since (`ferry forget`) leave the list. A failure keeps the list as it was, and counts as
    /// a reading for [`Points::stale`]: an unreachable store is not asked again at every
    /// lookup.
    pub fn refresh(&mut self, repo: &Repository) -> ferry_repo::Result<()> {
        self.read_at = Some(Instant::now());
        repo.sync_index()?;
        let ids = repo.recovery_point_ids()?;
        let present: HashSet<RecoveryPointId> = ids.iter().copied().collect();
        self.known.retain(|id, _| present.contains(id));
        for id in ids {
            if self.known.contains_key(&id) || self.only.as_ref().is_some_and(|o| !o.contains(&id)) {
                continue;
            }
            match repo.read_recovery_point(&id)? {
                Some(Ok(rp)) => {
                    self.known.insert(id, Some(rp));
                }
                Some(Err(e)) => {
                    tracing::warn!("recovery point {} is damaged and not shown: {e}", id.short());
                    self.known.insert(id, None);
                }
                None => {}
            }
        }
        let mut list: Vec<Point> = self
            .known
            .iter()
            .filter_map(|(id, rp)| rp.as_ref().map(|rp| Point { id: *id, name: folder_name(id, rp), rp: rp.clone() }))
            .collect();
        list.sort_by(|a, b| a.rp.time.cmp(&b.rp.time).then(a.id.cmp(&b.id)));
        self.list = list;
        Ok(())
    }

    /// The newest recovery point.
    pub fn latest(&self) -> Option<&Point> {
        self.list.last()
    }

    /// The recovery points of each host (`tags == false`) or tag, by folder name.
    pub fn groups(&self, tags: bool) -> BTreeMap<Vec<u8>, Vec<&Point>> {
        let mut out: BTreeMap<Vec<u8>, Vec<&Point>> = BTreeMap::new();
        for p in &self.list {
            if tags {
                for t in &p.rp.tags {
                    out.entry(safe_name(t.as_bytes())).or_default().push(p);
                }
            } else {
                out.entry(safe_name(p.rp.host.as_bytes())).or_default().push(p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_utc_time_and_id_prefix() {
        let rp = RecoveryPoint {
            time: "2026-12-08T02:21:44+02:00".into(),
            host: "h".into(),
            user: "u".into(),
            paths: vec!["/x".into()],
            tags: vec![],
            parent: None,
            tree: ferry_format::BlobId::from_bytes([0; 32]),
            partial: false,
            summary: Default::default(),
            ferry_version: "0".into(),
        };
        let id = RecoveryPointId::from_bytes([0x3f; 32]);
        assert_eq!(folder_name(&id, &rp), b"2026-12-08T00:21:44Z_3f3f3f3f");
    }

    #[test]
    fn hosts_and_tags_become_safe_folder_names() {
        assert_eq!(safe_name(b"a/b"), b"a_b");
        assert_eq!(safe_name(b".."), b"_");
        assert_eq!(safe_name(b""), b"_");
        assert_eq!(safe_name(b"nightly"), b"nightly");
    }
}
