//! Which recovery points a retention policy keeps: one rule set for `ferry forget` (which
//! reads the recovery points) and the vault (which reads only their pack lists).
//!
//! The rules follow restic's: recovery points are grouped (by host and paths); within a group,
//! newest first, `last` keeps the N newest, and `daily` (weekly, monthly, yearly) keeps the
//! newest recovery point of each of the N most recent days (ISO weeks, months, years) that
//! have one. A recovery point kept by any rule is kept; one whose time does not parse is kept.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, Utc};

use crate::RecoveryPointId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub yearly: Option<usize>,
}

impl Policy {
    /// No rule at all: such a policy keeps everything (it is never applied).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// A recovery point as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: RecoveryPointId,
    /// Recovery points are retained per group.
    pub group: String,
    /// RFC 3339.
    pub time: String,
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

/// Applies `policy` to `points` (any order); the decisions come newest first per group.
pub fn apply(policy: &Policy, points: &[Candidate]) -> Vec<Decision> {
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for p in points {
        groups.entry(&p.group).or_default().push(p);
    }
    type Bucket = fn(&DateTime<Utc>) -> (i32, u32);
    let rules: [(&'static str, Option<usize>, Bucket); 4] = [
        ("daily", policy.daily, |t| (t.year(), t.ordinal())),
        ("weekly", policy.weekly, |t| (t.iso_week().year(), t.iso_week().week())),
        ("monthly", policy.monthly, |t| (t.year(), t.month())),
        ("yearly", policy.yearly, |t| (t.year(), 0)),
    ];
    let mut out = Vec::new();
    for (_, mut g) in groups {
        // Newest first; times in RFC 3339 UTC sort as strings, the ID breaks ties.
        g.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        let mut seen: Vec<HashSet<(i32, u32)>> = vec![HashSet::new(); rules.len()];
        for (i, p) in g.iter().enumerate() {
            let mut reasons = Vec::new();
            if policy.last.is_some_and(|n| i < n) {
                reasons.push("last");
            }
            match parse_time(&p.time) {
                Some(t) => {
                    for (r, (name, n, bucket)) in rules.iter().enumerate() {
                        if let Some(n) = n {
                            if seen[r].len() < *n && seen[r].insert(bucket(&t)) {
                                reasons.push(name);
                            }
                        }
                    }
                }
                None => reasons.push("unparsable time"),
            }
            out.push(Decision { id: p.id, time: p.time.clone(), keep: !reasons.is_empty(), reasons });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate { id: RecoveryPointId::from_bytes([i as u8; 32]), group: "g".into(), time: t.to_string() })
            .collect()
    }

    fn kept(d: &[Decision]) -> Vec<&str> {
        d.iter().filter(|d| d.keep).map(|d| d.time.as_str()).collect()
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
        assert_eq!(kept(&d), vec!["2026-01-03T11:00:00Z", "2026-01-02T10:00:00Z"]);
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
        assert_eq!(kept(&d), vec!["2025-07-02T00:00:00Z", "2025-06-01T00:00:00Z"]);
        let d = apply(&Policy { weekly: Some(1), ..Default::default() }, &p);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1);
    }

    #[test]
    fn groups_are_retained_separately_and_bad_times_kept() {
        let mut p = points(&["2026-01-01T10:00:00Z", "2026-01-01T12:00:00Z", "not a time"]);
        p[0].group = "other".into();
        let d = apply(&Policy { daily: Some(1), ..Default::default() }, &p);
        assert!(d.iter().all(|d| d.keep), "{d:?}");
    }
}
