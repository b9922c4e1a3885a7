//! Alerts (issue #6): what needs someone's attention, computed from the database: failed,
//! partial or missed backups, import jobs near their tracking deadline or expired, unused vault
//! credentials about to expire, and storage over a threshold. The dashboard shows them; a
//! background task sends each one once, by webhook (JSON POST) and/or e-mail (SMTP), when the
//! vault is configured so (`ferry vault serve --alert-webhook URL --smtp URL --alert-email
//! ADDR --storage-alert SIZE`). What was sent is kept in `alerts_sent` (by the alert's key), so
//! several servers on one database and restarts send each alert once.

use anyhow::Context;
use serde::Serialize;

use ferry_api::JobState;

use crate::db::jobs::{jobs_of, JobInfo, Jobs};
use crate::db::{rfc3339, Db};
use crate::error::bail;
use crate::Result;

/// Import jobs this close to their deadline are alerted (and highlighted on the dashboard).
pub const DEADLINE_WARN_S: i64 = 3 * 24 * 3600;
/// Registration credentials expiring this soon are alerted.
const CREDENTIALS_WARN_S: i64 = 2 * 24 * 3600;
/// A backup this late after its policy's time is missed.
const MISSED_AFTER_S: i64 = 3600;

/// The job kinds that make a recovery point.
pub const BACKUP_KINDS: [&str; 3] = ["backup", "offline-backup", "device-backup"];

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Identifies the occurrence (sent once): e.g. `backup:JOB-ID`, `deadline:JOB`.
    pub key: String,
    /// `bad` or `warn`.
    pub level: &'static str,
    pub text: String,
    /// The machine (ID) it is about, if one: who may not read the machine does not see it.
    #[serde(skip)]
    pub machine: Option<String>,
}

/// How far `t` is from `now`, in words ("3 min ago", "in 2 days").
pub(crate) fn ago(now: i64, t: i64) -> String {
    match now - t {
        d if d < 0 => format!("in {}", span(-d)),
        d => format!("{} ago", span(d)),
    }
}

pub(crate) fn span(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub(crate) fn unix(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.timestamp())
}

/// The next time a policy starts a backup after `now` (the vault's local time stands for the
/// machine's: policies are written in the machine's local time).
pub(crate) fn next_backup(
    policy: &ferry_api::BackupPolicy,
    now: chrono::DateTime<chrono::Local>,
) -> Option<chrono::DateTime<chrono::Local>> {
    use chrono::{Datelike, TimeZone};
    for day in 0..8 {
        let date = now.date_naive() + chrono::Days::new(day);
        let weekday = ferry_api::DAYS[date.weekday().num_days_from_monday() as usize];
        if !policy.days.is_empty() && !policy.days.iter().any(|d| d == weekday) {
            continue;
        }
        let best = policy
            .times
            .iter()
            .filter_map(|t| ferry_api::parse_time(t))
            .filter_map(|(h, m)| date.and_hms_opt(h, m, 0).and_then(|dt| chrono::Local.from_local_datetime(&dt).earliest()))
            .filter(|at| *at > now)
            .min();
        if best.is_some() {
            return best;
        }
    }
    None
}

/// A machine's state as the dashboard shows it.
pub(crate) struct MachineStatus {
    pub id: String,
    pub name: String,
    pub state: String,
    /// `ok`, `warn` or `bad`.
    pub class: &'static str,
    /// End of the last backup that did not fail (Unix time).
    pub last_ok: Option<i64>,
    pub next: Option<chrono::DateTime<chrono::Local>>,
}

/// Every machine's state, and the alerts about machines.
async fn machines(db: &Db, now: i64) -> Result<(Vec<MachineStatus>, Vec<Alert>)> {
    let mut out = Vec::new();
    let mut alerts = Vec::new();
    for (id, name, _) in db.machines().await? {
        // Its newest jobs: the last backup is among them unless hundreds of restores followed.
        let jobs = jobs_of(db, Some(&id), Jobs::All, 200).await?;
        let mine: Vec<&JobInfo> = jobs.iter().map(|(_, j)| j).collect();
        let last = mine.iter().find(|j| BACKUP_KINDS.contains(&j.kind.as_str()));
        let last_ok = mine
            .iter()
            .find(|j| BACKUP_KINDS.contains(&j.kind.as_str()) && j.state != "failed" && j.state != "running")
            .and_then(|j| j.end.as_deref())
            .and_then(unix);
        let policy = db.policy(&id).await?;
        let (state, class) = match last {
            None => ("no backup yet".to_string(), "warn"),
            Some(j) if j.state == "failed" => (format!("last backup failed: {}", j.errors.first().map_or("", String::as_str)), "bad"),
            Some(j) if j.state == "completed-with-errors" => ("last backup completed with errors".to_string(), "warn"),
            Some(j) if j.state == "running" => ("backing up".to_string(), "ok"),
            Some(_) => ("ok".to_string(), "ok"),
        };
        if let Some(j) = last.filter(|_| class != "ok") {
            alerts.push(Alert {
                key: format!("backup:{}", j.id),
                level: class,
                text: format!("{name}: {state}"),
                machine: Some(id.clone()),
            });
        }
        // Missed: the policy's next time after the last good backup is more than an hour past.
        if let (Some(p), Some(end)) = (&policy, last_ok) {
            let since = chrono::DateTime::from_timestamp(end, 0).map(|t| t.with_timezone(&chrono::Local));
            if let Some(due) = since.and_then(|t| next_backup(p, t)).filter(|due| due.timestamp() + MISSED_AFTER_S < now) {
                alerts.push(Alert {
                    key: format!("missed:{id}:{}", due.timestamp()),
                    level: "bad",
                    text: format!("{name}: missed the backup due {}", due.format("%Y-%m-%d %H:%M")),
                    machine: Some(id.clone()),
                });
            }
        }
        let next = policy.as_ref().and_then(|p| next_backup(p, chrono::Local::now()));
        out.push(MachineStatus { id, name, state, class, last_ok, next });
    }
    Ok((out, alerts))
}

/// Every alert now. `storage_limit`: alert when all machines together store more.
pub async fn current(db: &Db, now: i64, storage_limit: Option<u64>) -> Result<Vec<Alert>> {
    Ok(status(db, now, storage_limit).await?.1)
}

/// Every machine's state and every alert now.
pub(crate) async fn status(db: &Db, now: i64, storage_limit: Option<u64>) -> Result<(Vec<MachineStatus>, Vec<Alert>)> {
    let (machines, mut alerts) = machines(db, now).await?;
    for j in db.import_jobs(None).await? {
        match (j.state, j.deadline.as_deref().and_then(unix)) {
            (JobState::Expired, _) => alerts.push(Alert {
                key: format!("expired:{}", j.name),
                level: "bad",
                text: format!("import job {} expired without a tracking number", j.name),
                machine: None,
            }),
            (JobState::Created | JobState::AwaitingShipment, Some(d)) if d - now < DEADLINE_WARN_S => alerts.push(Alert {
                key: format!("deadline:{}", j.name),
                level: "warn",
                text: format!("import job {} must ship by {} ({})", j.name, rfc3339(d), ago(now, d)),
                machine: None,
            }),
            _ => {}
        }
    }
    for (hash, t) in db.expiring_registrations(now, now + CREDENTIALS_WARN_S).await? {
        alerts.push(Alert {
            key: format!("credentials:{}", &hash[..hash.len().min(16)]),
            level: "warn",
            text: format!("unused vault credentials expire {}", ago(now, t)),
            machine: None,
        });
    }
    if let Some(limit) = storage_limit {
        let stored: u64 = db.latest_samples().await?.values().map(|s| s.stored_bytes).sum();
        if stored > limit {
            let day = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default().format("%Y-%m-%d");
            alerts.push(Alert {
                key: format!("storage:{day}"),
                level: "bad",
                text: format!("the vault stores {stored} bytes, over the alert threshold of {limit} bytes"),
                machine: None,
            });
        }
    }
    Ok((machines, alerts))
}

/// Where alerts go.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// POSTed `{"vault": ..., "alerts": [{"key", "level", "text"}]}`.
    pub webhook: Option<String>,
    /// `smtp://HOST:PORT` (plain, for a local relay), `smtp://HOST:587?tls=required`
    /// (STARTTLS) or `smtps://HOST:465`, with `USER:PASSWORD@` when the server wants a login.
    pub smtp: Option<String>,
    /// The recipient, and the sender (default `ferry-vault@HOSTNAME`).
    pub email: Option<String>,
    pub from: Option<String>,
    /// Alert when all machines together store more than this.
    pub storage_limit: Option<u64>,
}

impl Sinks {
    pub fn any(&self) -> bool {
        self.webhook.is_some() || (self.smtp.is_some() && self.email.is_some())
    }
}

/// How often the sender looks (60 s; `FERRY_VAULT_ALERT_S` overrides it).
pub fn alert_every_s() -> u64 {
    std::env::var("FERRY_VAULT_ALERT_S").ok().and_then(|v| v.parse().ok()).filter(|s| *s > 0).unwrap_or(60)
}

/// Sends the alerts not sent yet; returns how many were sent. An alert whose sending failed is
/// tried again next round.
pub async fn send_new(db: &Db, sinks: &Sinks, vault: &str) -> Result<usize> {
    let now = chrono::Utc::now().timestamp();
    let alerts = current(db, now, sinks.storage_limit).await?;
    let keys: Vec<&str> = alerts.iter().map(|a| a.key.as_str()).collect();
    let sent = db.sent(&keys).await?;
    let new: Vec<&Alert> = alerts.iter().filter(|a| !sent.contains(&a.key)).collect();
    if new.is_empty() {
        return Ok(0);
    }
    if let Some(url) = &sinks.webhook {
        let body = serde_json::json!({"vault": vault, "alerts": new});
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build()?;
        let resp = client.post(url).json(&body).send().await.map_err(|e| anyhow::anyhow!("alert webhook: {}", e.without_url()))?;
        if !resp.status().is_success() {
            bail!("alert webhook answered {}", resp.status());
        }
    }
    if let (Some(smtp), Some(to)) = (&sinks.smtp, &sinks.email) {
        send_mail(smtp, sinks.from.as_deref(), to, vault, &new).await?;
    }
    for a in &new {
        db.mark_sent(&a.key, now).await?;
    }
    tracing::info!("sent {} alert(s)", new.len());
    Ok(new.len())
}

async fn send_mail(smtp: &str, from: Option<&str>, to: &str, vault: &str, alerts: &[&Alert]) -> Result<()> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let from = from.map_or_else(|| format!("ferry-vault@{host}"), str::to_string);
    let mut body = format!("The Ferry vault {vault} has {} new alert(s):\n\n", alerts.len());
    for a in alerts {
        body.push_str(&format!("[{}] {}\n", a.level, a.text));
    }
    let msg = Message::builder()
        .from(from.parse().with_context(|| format!("alert sender {from:?}"))?)
        .to(to.parse().with_context(|| format!("alert recipient {to:?}"))?)
        .subject(format!("Ferry vault: {} alert(s)", alerts.len()))
        .body(body)?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp).context("the --smtp URL")?.build();
    transport.send(msg).await.map_err(|e| anyhow::anyhow!("sending the alert e-mail: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_backup_follows_days_and_times() {
        use chrono::TimeZone;
        let p = ferry_api::BackupPolicy {
            paths: vec!["/".into()],
            times: vec!["02:00".into(), "14:30".into()],
            days: vec!["mon".into()],
            ..Default::default()
        };
        // 2026-11-30 is a Monday.
        let now = chrono::Local.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap();
        assert_eq!(next_backup(&p, now).unwrap(), chrono::Local.with_ymd_and_hms(2026, 11, 30, 14, 30, 0).unwrap());
        let later = chrono::Local.with_ymd_and_hms(2026, 11, 30, 15, 0, 0).unwrap();
        assert_eq!(next_backup(&p, later).unwrap(), chrono::Local.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap());
    }

    #[test]
    fn spans_read_as_words() {
        assert_eq!(span(90), "90 s");
        assert_eq!(span(3 * 86_400), "3 days");
        assert_eq!(ago(100, 40), "60 s ago");
        assert_eq!(ago(0, 7200), "in 2 h");
    }
}
