//! The dashboard's pages: the overview (machines, alerts, the vault's chart), one machine's
//! page (its chart, recovery points, jobs with errors) and the import jobs. What a page shows
//! follows the API's role rules ([`super::Viewer::may_read`]): an import operator, whom the
//! API refuses every machine's data, sees no machine on the overview and gets 403 for a
//! machine's page; import jobs are every user's to read, as in the API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use ferry_api::{ExportJob, ImportJob};

use super::{error_page, html, viewer, PageError, PageResult, St};
use crate::alerts::{self, ago, span, unix, Alert, DEADLINE_WARN_S};
use crate::db::jobs::{jobs_of, JobInfo, Jobs};
use crate::imports::rfc3339;
use crate::samples::Sample;

/// Recovery points per page.
const PAGE: usize = 50;

// ---------------------------------------------------------------- shared view data

/// A size as the dashboard shows it: one decimal ([`ferry_api::human_size`]).
fn size(n: u64) -> String {
    ferry_api::human_size(n, 1)
}

/// A machine as the overview shows it.
struct MachineRow {
    name: String,
    state: String,
    state_class: &'static str,
    last_backup: String,
    next_backup: String,
    protected: String,
    stored: String,
}

/// An SVG line chart of stored and protected bytes over time (numbers only: no text from
/// users goes into it).
fn chart(samples: &[Sample]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    if samples.len() < 2 {
        return String::new();
    }
    let t0 = samples.first().map_or(0, |s| s.time) as f64;
    let t1 = samples.last().map_or(1, |s| s.time) as f64;
    let top = samples.iter().map(|s| s.stored_bytes.max(s.protected_bytes)).max().unwrap_or(1).max(1) as f64;
    let x = |t: i64| if t1 > t0 { (t as f64 - t0) / (t1 - t0) * (W - 20.0) + 10.0 } else { 10.0 };
    let y = |v: u64| H - 10.0 - v as f64 / top * (H - 30.0);
    // One point per pixel column at most (90 days of 15-minute samples are 8640): the last
    // sample of each column.
    let mut shown: Vec<&Sample> = Vec::new();
    for s in samples {
        match shown.last() {
            Some(prev) if x(prev.time).round() == x(s.time).round() => *shown.last_mut().expect("not empty") = s,
            _ => shown.push(s),
        }
    }
    let line = |f: fn(&Sample) -> u64| shown.iter().map(|s| format!("{:.1},{:.1}", x(s.time), y(f(s)))).collect::<Vec<_>>().join(" ");
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"stored and protected size over time\">\
         <line x1=\"10\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" class=\"axis\"/>\
         <polyline class=\"protected\" points=\"{p}\"/><polyline class=\"stored\" points=\"{s}\"/>\
         <text x=\"12\" y=\"14\" class=\"label\">{top}</text></svg>",
        b = H - 10.0,
        r = W - 10.0,
        p = line(|s| s.protected_bytes),
        s = line(|s| s.stored_bytes),
        top = size(top as u64),
    )
}

// ---------------------------------------------------------------- overview

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    user: String,
    role: &'static str,
    csrf: String,
    alerts: Vec<Alert>,
    /// Does this user see machines at all (not an import operator)?
    sees_machines: bool,
    machines: Vec<MachineRow>,
    chart: String,
    stored: String,
    protected: String,
}

pub(crate) async fn overview(AxState(state): St, headers: HeaderMap) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let now = chrono::Utc::now().timestamp();
    state.db.reap_jobs(now, crate::api::job_timeout_s()).await?;
    let db = &state.db;
    let latest = db.latest_samples().await?;
    let (machines, mut alerts) = alerts::status(db, now, state.alerts.storage_limit).await?;
    // Only the machines, and the machines' alerts, this user may read through the API.
    alerts.retain(|a| a.machine.as_deref().is_none_or(|m| v.may_read(m)));
    let mut rows = Vec::new();
    for m in machines.into_iter().filter(|m| v.may_read(&m.id)) {
        let s = latest.get(&m.id);
        rows.push(MachineRow {
            name: m.name,
            state: m.state,
            state_class: m.class,
            last_backup: m.last_ok.map_or("never".into(), |t| format!("{} ({})", rfc3339(t), ago(now, t))),
            next_backup: m.next.map_or("no policy".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
            protected: s.map_or("-".into(), |s| size(s.protected_bytes)),
            stored: s.map_or("-".into(), |s| size(s.stored_bytes)),
        });
    }
    let total = db.vault_samples(now - 90 * 86_400).await?;
    let last = total.last();
    let page = Overview {
        sees_machines: v.may_read(""),
        user: v.name,
        role: v.role.as_str(),
        csrf: v.csrf,
        alerts,
        machines: rows,
        chart: chart(&total),
        stored: last.map_or("-".into(), |s| size(s.stored_bytes)),
        protected: last.map_or("-".into(), |s| size(s.protected_bytes)),
    };
    html(&page)
}

// ---------------------------------------------------------------- one machine

struct PointRow {
    id: String,
    time: String,
    size: String,
    files: String,
    tags: String,
}

struct JobRow {
    kind: String,
    state: String,
    start: String,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "machine.html")]
struct MachinePage {
    user: String,
    role: &'static str,
    csrf: String,
    name: String,
    chart: String,
    points: Vec<PointRow>,
    total_points: usize,
    jobs: Vec<JobRow>,
}

pub(crate) async fn machine(AxState(state): St, headers: HeaderMap, Path(name): Path<String>) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let db = &state.db;
    let found = db.machines().await?.into_iter().find(|(_, n, _)| *n == name);
    // Refused alike whether the machine exists or not: the page does not tell.
    if !v.may_read(found.as_ref().map_or("", |(id, _, _)| id.as_str())) {
        return Err(PageError::Forbidden("Your role may not see machines' backups (as in the API): see the import jobs instead."));
    }
    let Some((id, name, _)) = found else { return error_page(StatusCode::NOT_FOUND, "No such machine.") };
    let now = chrono::Utc::now().timestamp();
    // The recovery points in the store (the truth: retention removes some), with what their
    // backups reported.
    let (store, prefix) = (state.store.clone(), format!("machines/{id}/recovery-points/"));
    let listed =
        tokio::task::spawn_blocking(move || store.list(&prefix)).await.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)?;
    // The backups that reported a recovery point (retention may have removed some since).
    let jobs = jobs_of(db, Some(&id), Jobs::WithRecoveryPoint, 1_000_000).await?;
    let reported: HashMap<&str, &JobInfo> = jobs.iter().filter_map(|(_, j)| j.recovery_point.as_deref().map(|rp| (rp, j))).collect();
    let mut points: Vec<(i64, PointRow)> = listed
        .iter()
        .map(|o| {
            let rp = o.key.rsplit('/').next().unwrap_or_default().to_string();
            let job = reported.get(rp.as_str());
            let time = job.and_then(|j| j.end.as_deref()).and_then(unix).or(o.modified).unwrap_or(0);
            let row = PointRow {
                id: rp.chars().take(16).collect(),
                time: rfc3339(time),
                size: job.and_then(|j| j.total_bytes).map_or("-".into(), |b| size(b.max(0) as u64)),
                files: job.map_or("-".into(), |j| j.files.to_string()),
                tags: job.map_or(String::new(), |j| j.tags.join(", ")),
            };
            (time, row)
        })
        .collect();
    points.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    let total_points = points.len();
    let jobs_with_errors = jobs_of(db, Some(&id), Jobs::WithErrors, PAGE as i64)
        .await?
        .iter()
        .map(|(_, j)| JobRow { kind: j.kind.clone(), state: j.state.clone(), start: j.start.clone(), errors: j.errors.clone() })
        .collect();
    let page = MachinePage {
        user: v.name,
        role: v.role.as_str(),
        csrf: v.csrf,
        name,
        chart: chart(&db.samples(&id, now - 90 * 86_400).await?),
        points: points.into_iter().take(PAGE).map(|(_, r)| r).collect(),
        total_points,
        jobs: jobs_with_errors,
    };
    html(&page)
}

// ---------------------------------------------------------------- import jobs and devices

struct ImportRow {
    name: String,
    kind: String,
    machine: String,
    state: String,
    disks: String,
    shipping: String,
    deadline: String,
    deadline_class: &'static str,
}

#[derive(Template)]
#[template(path = "imports.html")]
struct ImportsPage {
    user: String,
    role: &'static str,
    csrf: String,
    jobs: Vec<ImportRow>,
}

fn import_row(j: &ImportJob, now: i64) -> ImportRow {
    let unit = if j.kind == "device" { "device" } else { "disk" };
    let deadline = j.deadline.as_deref();
    row([&j.name, &j.kind, &j.machine_name, j.state.as_str()], unit, &j.disks, (&j.carrier, &j.tracking), deadline, now)
}

/// An export job, beside the import jobs (kind `export`).
fn export_row(j: &ExportJob, now: i64) -> ImportRow {
    row([&j.name, "export", &j.machine_name, j.state.as_str()], "disk", &j.disks, (&j.carrier, &j.tracking), j.deadline.as_deref(), now)
}

/// A row of the jobs table: `[name, kind, machine, state]`, the disks (each a `unit`), the
/// carrier and tracking number, the ship-by deadline.
fn row(
    [name, kind, machine, state]: [&str; 4],
    unit: &str,
    disks: &[ferry_api::DiskRecord],
    (carrier, tracking): (&Option<String>, &Option<String>),
    deadline: Option<&str>,
    now: i64,
) -> ImportRow {
    let disks = disks.iter().map(|d| format!("{unit} {}: {}", d.id, d.state)).collect::<Vec<_>>();
    let (deadline, class) = match deadline.and_then(unix) {
        Some(d) if d <= now => (format!("{} (passed)", rfc3339(d)), "bad"),
        Some(d) if d - now < DEADLINE_WARN_S => (format!("{} ({} left)", rfc3339(d), span(d - now)), "warn"),
        Some(d) => (format!("{} ({} left)", rfc3339(d), span(d - now)), ""),
        None => ("-".into(), ""),
    };
    ImportRow {
        name: name.into(),
        kind: kind.into(),
        machine: machine.into(),
        state: state.into(),
        disks: disks.join(", "),
        shipping: match (carrier, tracking) {
            (Some(c), Some(t)) => format!("{c} {t}"),
            (None, Some(t)) => t.clone(),
            _ => "-".into(),
        },
        deadline,
        deadline_class: class,
    }
}

pub(crate) async fn imports(AxState(state): St, headers: HeaderMap) -> PageResult {
    let v = viewer(&state, &headers).await?;
    let now = chrono::Utc::now().timestamp();
    let mut jobs: Vec<ImportRow> = state.db.import_jobs(None).await?.iter().map(|j| import_row(j, now)).collect();
    jobs.extend(state.db.export_jobs().await?.iter().map(|j| export_row(j, now)));
    html(&ImportsPage { user: v.name, role: v.role.as_str(), csrf: v.csrf, jobs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
    }

    #[test]
    fn charts_are_numbers_only() {
        let s = |time, stored_bytes| Sample { time, stored_bytes, stored_objects: 1, protected_bytes: stored_bytes * 2 };
        assert_eq!(chart(&[s(0, 1)]), "", "one point is no line");
        let svg = chart(&[s(0, 100), s(60, 300)]);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        // 90 days of 15-minute samples: at most one point per pixel column.
        let many: Vec<Sample> = (0..8640).map(|i| s(i * 900, i as u64)).collect();
        let svg = chart(&many);
        let points = svg.split("points=\"").nth(2).unwrap().split('"').next().unwrap().split(' ').count();
        assert!((600..=621).contains(&points), "{points} points");
    }
}
