use anyhow::Result;

use crate::cli::{Global, RecoveryPointsArgs};
use crate::common;
use crate::Outcome;

pub fn list(g: &Global, a: &RecoveryPointsArgs) -> Result<Outcome> {
    let repo = common::open(g)?;
    let points: Vec<_> = repo
        .recovery_points()?
        .into_iter()
        .filter(|(_, rp)| a.host.as_ref().is_none_or(|h| &rp.host == h))
        .filter(|(_, rp)| a.tag.iter().all(|t| rp.tags.contains(t)))
        .collect();
    if g.json {
        let v: Vec<_> = points
            .iter()
            .map(|(id, rp)| {
                serde_json::json!({
                    "id": id.to_hex(),
                    "time": rp.time,
                    "host": rp.host,
                    "paths": rp.paths,
                    "tags": rp.tags,
                    "parent": rp.parent.map(|p| p.to_hex()),
                    "partial": rp.partial,
                    "summary": rp.summary,
                })
            })
            .collect();
        common::print_json(&v)?;
        return Ok(Outcome::Success);
    }
    println!("{:<10} {:<20} {:<16} {:>10}  paths", "ID", "time", "host", "size");
    for (id, rp) in &points {
        let time =
            chrono::DateTime::parse_from_rfc3339(&rp.time).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or(rp.time.clone());
        let mut paths = rp.paths.join(" ");
        if !rp.tags.is_empty() {
            paths.push_str(&format!("  [{}]", rp.tags.join(",")));
        }
        if rp.partial {
            paths.push_str("  (partial)");
        }
        println!("{:<10} {:<20} {:<16} {:>10}  {}", id.short(), time, rp.host, common::size(rp.summary.total_bytes), paths);
    }
    println!("{} recovery point(s)", points.len());
    Ok(Outcome::Success)
}
