//! Retention: which recovery points a policy keeps.
//!
//! The rules follow restic's: recovery points are grouped by host and paths; within a group,
//! newest first, `keep_last` keeps the N newest, and `keep_daily` (weekly, monthly, yearly)
//! keeps the newest recovery point of each of the N most recent days (ISO weeks, months,
//! years) that have one. A recovery point kept by any rule is kept.

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Utc};
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::RecoveryPointId;

use crate::Repository;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub yearly: Option<usize>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// The decision for one recovery point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub id: RecoveryPointId,
    pub time: String,
    pub keep: bool,
    /// Which rules keep it ("last", "daily", ...).
    pub reasons: Vec<&'static str>,
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|d| d.with_timezone(&Utc))
}

/// Applies `policy` to `points` (any order). Points whose time cannot be parsed are kept.
pub fn apply(policy: &Policy, points: &[(RecoveryPointId, RecoveryPoint)]) -> Vec<Decision> {
    type Group<'a> = Vec<&'a (RecoveryPointId, RecoveryPoint)>;
    let mut groups: BTreeMap<(String, Vec<String>), Group<'_>> = BTreeMap::new();
    for p in points {
        groups.entry((p.1.host.clone(), p.1.paths.clone())).or_default().push(p);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        type Bucket = fn(&DateTime<Utc>) -> (i32, u32, u32);
        let rules: [(&'static str, Option<usize>, Bucket); 4] = [
            ("daily", policy.daily, |t| (t.year(), t.ordinal(), 0)),
            ("weekly", policy.weekly, |t| (t.iso_week().year(), t.iso_week().week(), 0)),
            ("monthly", policy.monthly, |t| (t.year(), t.month(), 0)),
            ("yearly", policy.yearly, |t| (t.year(), 0, 0)),
        ];
        let mut seen: Vec<HashSet<(i32, u32, u32)>> = vec![HashSet::new(); rules.len()];
        for (i, (id, rp)) in g.iter().map(|p| (&p.0, &p.1)).enumerate() {
            let mut reasons = Vec::new();
            if policy.last.is_some_and(|n| i < n) {
                reasons.push("last");
            }
            match parse_time(&rp.time) {
                Some(t) => {
                    for (r, (name, n, bucket)) in rules.iter().enumerate() {
                        if let Some(n) = n {
                            let b = bucket(&t);
                            if seen[r].len() < *n && seen[r].insert(b) {
                                reasons.push(name);
                            }
                        }
                    }
                }
                None => reasons.push("unparsable time"),
            }
            out.push(Decision { id: *id, time: rp.time.clone(), keep: !reasons.is_empty(), reasons });
        }
    }
    out
}

/// Deletes recovery points. Deleting a recovery point only removes its object; the space is
/// reclaimed by `prune`.
pub fn delete(repo: &Repository, ids: &[RecoveryPointId]) -> Result<()> {
    for id in ids {
        repo.store().delete(&id.object_key()).with_context(|| format!("delete recovery point {}", id.short()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_format::recovery_point::Summary;
    use ferry_format::BlobId;

    fn rp(time: &str) -> RecoveryPoint {
        RecoveryPoint {
            time: time.into(),
            host: "h".into(),
            user: "u".into(),
            paths: vec!["/p".into()],
            tags: vec![],
            parent: None,
            tree: BlobId::from_bytes([0; 32]),
            partial: false,
            summary: Summary::default(),
            ferry_version: "t".into(),
        }
    }

    fn points(times: &[&str]) -> Vec<(RecoveryPointId, RecoveryPoint)> {
        times.iter().enumerate().map(|(i, t)| (RecoveryPointId::from_bytes([i as u8; 32]), rp(t))).collect()
    }

    #[test]
    fn keep_last_and_daily() {
        let p = points(&[
            "2026-01-01T10:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-02T10:00:00Z",
            "2026-01-03T10:00:00Z",
            "2026-01-03T11:00:00Z",
        ]);
        let d = apply(&Policy { daily: Some(2), ..Default::default() }, &p);
        let kept: Vec<&str> = d.iter().filter(|d| d.keep).map(|d| d.time.as_str()).collect();
        assert_eq!(kept, vec!["2026-01-03T11:00:00Z", "2026-01-02T10:00:00Z"]);
        let d = apply(&Policy { last: Some(1), monthly: Some(1), ..Default::default() }, &p);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1);
        let d = apply(&Policy { last: Some(10), ..Default::default() }, &p);
        assert!(d.iter().all(|d| d.keep));
    }

    #[test]
    fn weekly_monthly_yearly() {
        let p = points(&["2024-06-01T00:00:00Z", "2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z", "2025-07-02T00:00:00Z"]);
        let d = apply(&Policy { yearly: Some(5), ..Default::default() }, &p);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 2);
        let d = apply(&Policy { monthly: Some(2), ..Default::default() }, &p);
        let kept: Vec<&str> = d.iter().filter(|d| d.keep).map(|d| d.time.as_str()).collect();
        assert_eq!(kept, vec!["2025-07-02T00:00:00Z", "2025-06-01T00:00:00Z"]);
        let d = apply(&Policy { weekly: Some(1), ..Default::default() }, &p);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1);
    }
}
