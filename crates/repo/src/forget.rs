//! Retention: which recovery points a policy keeps (rules: `ferry_format::retention`; here
//! recovery points are grouped by host and paths).

use anyhow::Context;
use ferry_format::recovery_point::RecoveryPoint;
use ferry_format::retention::Candidate;
pub use ferry_format::retention::{Decision, Policy};
use ferry_format::RecoveryPointId;

use crate::Repository;

/// The retention group of a recovery point: its host and paths.
fn group(rp: &RecoveryPoint) -> String {
    // NUL separates: it cannot occur in a host name or path.
    let mut g = rp.host.clone();
    for p in &rp.paths {
        g.push('\0');
        g.push_str(p);
    }
    g
}

/// Applies `policy` to `points` (any order). Points whose time cannot be parsed are kept.
pub fn apply(policy: &Policy, points: &[(RecoveryPointId, RecoveryPoint)]) -> Vec<Decision> {
    let candidates: Vec<Candidate> = points.iter().map(|(id, rp)| Candidate { id: *id, group: group(rp), time: rp.time.clone() }).collect();
    ferry_format::retention::apply(policy, &candidates)
}

/// Deletes recovery points. Deleting a recovery point only removes its object; the space is
/// reclaimed by `prune`.
pub fn delete(repo: &Repository, ids: &[RecoveryPointId]) -> crate::Result<()> {
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

    fn rp(time: &str, paths: &[&str]) -> RecoveryPoint {
        RecoveryPoint {
            time: time.into(),
            host: "h".into(),
            user: "u".into(),
            paths: paths.iter().map(std::string::ToString::to_string).collect(),
            tags: vec![],
            parent: None,
            tree: BlobId::from_bytes([0; 32]),
            partial: false,
            summary: Summary::default(),
            ferry_version: "t".into(),
        }
    }

    #[test]
    fn recovery_points_are_grouped_by_host_and_paths() {
        let p: Vec<_> = [("2026-01-01T10:00:00Z", &["/a"][..]), ("2026-01-01T11:00:00Z", &["/a"]), ("2026-01-01T12:00:00Z", &["/a", "/b"])]
            .iter()
            .enumerate()
            .map(|(i, (t, paths))| (RecoveryPointId::from_bytes([i as u8; 32]), rp(t, paths)))
            .collect();
        let d = apply(&Policy { last: Some(1), ..Default::default() }, &p);
        let kept: Vec<&str> = d.iter().filter(|d| d.keep).map(|d| d.time.as_str()).collect();
        assert_eq!(kept.len(), 2, "the newest of each group: {kept:?}");
        assert!(!kept.contains(&"2026-01-01T10:00:00Z"));
    }
}
