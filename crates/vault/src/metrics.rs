//! `GET /metrics`: the vault's state in the Prometheus text format (version 0.0.4), from the
//! database only (docs/design/dashboard.md "/metrics"). Gauges are counted at each scrape;
//! the byte and object counters are the vault's per-machine traffic since registration.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::alerts::BACKUP_KINDS;
use crate::db::Db;
use crate::Result;

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric family: HELP and TYPE, then its samples (`labels` already formatted).
// Written here rather than taken from a crate: every number is read from the database at each
// scrape, so there is no in-process registry of counters to keep, which is what `prometheus`
// (with its registry, collectors and global state) and `prometheus-client` (typed metric
// families) are for; `prometheus-client` also writes OpenMetrics (`# EOF`, `_total` counter
// names), not the 0.0.4 text scrapers get today, and `metrics-exporter-prometheus` brings its
// own HTTP listener. What is needed is HELP, TYPE and one line per sample with escaped label
// values: these two functions.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The whole exposition.
pub async fn render(db: &Db) -> Result<String> {
    let mut out = String::new();
    family(&mut out, "ferry_vault_machines", "gauge", "Registered machines.", &[(String::new(), db.machine_count().await? as f64)]);
    family(&mut out, "ferry_vault_users", "gauge", "Vault users (tokens with a role).", &[(String::new(), db.user_count().await? as f64)]);

    // Jobs: by kind and state; finished ones' durations and errors by kind; each machine's last
    // backup.
    let by_state: BTreeMap<(String, String), f64> = db.job_counts().await?.into_iter().map(|(k, s, n)| ((k, s), n as f64)).collect();
    let mut durations: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut errors: BTreeMap<String, f64> = BTreeMap::new();
    for (kind, seconds, count, errs) in db.finished_jobs().await? {
        durations.insert(kind.clone(), (seconds as f64, count as f64));
        errors.insert(kind, errs as f64);
    }
    let last_backup: BTreeMap<String, f64> = db.last_backups(&BACKUP_KINDS).await?.into_iter().map(|(m, t)| (m, t as f64)).collect();
    let samples: Vec<(String, f64)> =
        by_state.iter().map(|((k, s), n)| (format!("kind=\"{}\",state=\"{}\"", label(k), label(s)), *n)).collect();
    family(&mut out, "ferry_vault_jobs", "gauge", "Jobs in the vault's database by kind and state.", &samples);
    let sums: Vec<(String, f64)> = durations.iter().map(|(k, (s, _))| (format!("kind=\"{}\"", label(k)), *s)).collect();
    family(&mut out, "ferry_vault_job_duration_seconds_sum", "counter", "Total duration of finished jobs by kind.", &sums);
    let counts: Vec<(String, f64)> = durations.iter().map(|(k, (_, n))| (format!("kind=\"{}\"", label(k)), *n)).collect();
    family(&mut out, "ferry_vault_job_duration_seconds_count", "counter", "Finished jobs by kind.", &counts);
    let errs: Vec<(String, f64)> = errors.iter().map(|(k, n)| (format!("kind=\"{}\"", label(k)), *n)).collect();
    family(&mut out, "ferry_vault_job_errors", "counter", "Errors reported by finished jobs, by kind.", &errs);
    let last: Vec<(String, f64)> = last_backup.iter().map(|(m, t)| (format!("machine=\"{}\"", label(m)), *t)).collect();
    family(
        &mut out,
        "ferry_vault_machine_last_backup_timestamp_seconds",
        "gauge",
        "End of each machine's last backup that did not fail (Unix time).",
        &last,
    );

    // Traffic, per machine.
    let traffic = db.traffic().await?;
    let names: BTreeMap<String, String> = db.machines().await?.into_iter().map(|(id, name, _)| (name, id)).collect();
    let per = |i: usize| -> Vec<(String, f64)> {
        names.iter().map(|(name, id)| (format!("machine=\"{}\"", label(name)), traffic.get(id).map_or(0, |t| t[i]) as f64)).collect()
    };
    family(&mut out, "ferry_vault_machine_bytes_received_total", "counter", "Object bytes the vault received from each machine.", &per(0));
    family(&mut out, "ferry_vault_machine_objects_received_total", "counter", "Objects the vault received from each machine.", &per(1));
    family(&mut out, "ferry_vault_machine_bytes_sent_total", "counter", "Object bytes the vault sent to each machine.", &per(2));
    family(&mut out, "ferry_vault_machine_objects_sent_total", "counter", "Objects the vault sent to each machine.", &per(3));

    // Sizes, from the newest storage sample of each machine.
    let latest = db.latest_samples().await?;
    let size = |f: fn(&crate::samples::Sample) -> u64| -> Vec<(String, f64)> {
        names.iter().filter_map(|(name, id)| latest.get(id).map(|s| (format!("machine=\"{}\"", label(name)), f(s) as f64))).collect()
    };
    family(
        &mut out,
        "ferry_vault_stored_bytes",
        "gauge",
        "Bytes each machine stores in the vault (newest sample).",
        &size(|s| s.stored_bytes),
    );
    family(
        &mut out,
        "ferry_vault_stored_objects",
        "gauge",
        "Objects each machine stores in the vault (newest sample).",
        &size(|s| s.stored_objects),
    );
    family(
        &mut out,
        "ferry_vault_protected_bytes",
        "gauge",
        "Size of the data each machine's last backup covered (newest sample).",
        &size(|s| s.protected_bytes),
    );
    let total: f64 = latest.values().map(|s| s.stored_bytes as f64).sum();
    family(
        &mut out,
        "ferry_vault_storage_bytes",
        "gauge",
        "Bytes all machines store in the vault (newest samples).",
        &[(String::new(), total)],
    );

    // Import and device jobs by state.
    let mut imports: BTreeMap<(String, String), f64> = BTreeMap::new();
    for j in db.import_jobs(None).await? {
        *imports.entry((j.kind.clone(), j.state.as_str().to_string())).or_default() += 1.0;
    }
    let samples: Vec<(String, f64)> =
        imports.iter().map(|((k, s), n)| (format!("kind=\"{}\",state=\"{}\"", label(k), label(s)), *n)).collect();
    family(&mut out, "ferry_vault_import_jobs", "gauge", "Import jobs (kind disks) and seed device jobs (kind device) by state.", &samples);
    let mut exports: BTreeMap<String, f64> = BTreeMap::new();
    for j in db.export_jobs().await? {
        *exports.entry(j.state.as_str().to_string()).or_default() += 1.0;
    }
    let samples: Vec<(String, f64)> = exports.iter().map(|(s, n)| (format!("state=\"{}\"", label(s)), *n)).collect();
    family(
        &mut out,
        "ferry_vault_export_jobs",
        "gauge",
        "Export jobs (recovery points travelling to their machine on disks) by state.",
        &samples,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_exposition_counts_what_the_database_holds() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open_file(&dir.path().join("v.db")).await.unwrap();
            let secret = db.add_registration(i64::MAX).await.unwrap();
            let (m, _) = db.register(&secret, "web \"1\"", 0).await.unwrap().unwrap();
            let id = db.create_job(&m, "backup", chrono::Utc::now().timestamp()).await.unwrap();
            let end = ferry_api::JobUpdate {
                state: "completed".into(),
                bytes: 100,
                files: 3,
                errors: vec!["f: gone".into()],
                total_bytes: Some(5000),
                recovery_point: None,
                tags: vec![],
            };
            db.update_job(id, &m, &end, chrono::Utc::now().timestamp()).await.unwrap();
            db.create_job(&m, "restore", chrono::Utc::now().timestamp()).await.unwrap();
            db.add_traffic(&m, 1234, 2, 10, 1).await.unwrap();
            let text = render(&db).await.unwrap();
            for want in [
                "ferry_vault_machines 1",
                "ferry_vault_jobs{kind=\"backup\",state=\"completed\"} 1",
                "ferry_vault_jobs{kind=\"restore\",state=\"running\"} 1",
                "ferry_vault_job_duration_seconds_count{kind=\"backup\"} 1",
                "ferry_vault_job_errors{kind=\"backup\"} 1",
                "ferry_vault_machine_bytes_received_total{machine=\"web \\\"1\\\"\"} 1234",
                "ferry_vault_machine_objects_sent_total{machine=\"web \\\"1\\\"\"} 1",
                "# TYPE ferry_vault_machine_last_backup_timestamp_seconds gauge",
            ] {
                assert!(text.contains(want), "{want:?} not in:\n{text}");
            }
            // Every sample line is `name{labels} value` or `name value`.
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let (name, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                assert!(name.starts_with("ferry_vault_"), "{line}");
            }
        });
    }

    /// The same aggregates on PostgreSQL (`FERRY_TEST_POSTGRES`, set by scripts/test.sh), whose
    /// SQL differs: a machine of a name unique to this run.
    #[test]
    fn the_exposition_runs_on_postgres() {
        crate::db::testing::on_postgres(|db, tag| async move {
            let name = format!("metered{tag}");
            let secret = db.add_registration(i64::MAX).await.unwrap();
            let (m, _) = db.register(&secret, &name, 0).await.unwrap().unwrap();
            let id = db.create_job(&m, "backup", chrono::Utc::now().timestamp()).await.unwrap();
            let end = ferry_api::JobUpdate {
                state: "completed".into(),
                bytes: 1,
                files: 1,
                errors: vec!["x".into()],
                total_bytes: None,
                recovery_point: None,
                tags: vec![],
            };
            db.update_job(id, &m, &end, chrono::Utc::now().timestamp()).await.unwrap();
            let text = render(&db).await.unwrap();
            let want = format!("ferry_vault_machine_last_backup_timestamp_seconds{{machine=\"{name}\"}}");
            assert!(text.contains(&want), "{want:?} not in:\n{text}");
            assert!(text.contains("ferry_vault_job_duration_seconds_count{kind=\"backup\"}"), "{text}");
            assert!(text.contains("ferry_vault_job_errors{kind=\"backup\"}"), "{text}");
        });
    }
}
