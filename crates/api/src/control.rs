//! The vault's control plane as the API shows it (docs/protocol.md): health, registration,
//! users, machines, jobs and their reports, retention runs and soft-deleted recovery points.

use serde::{Deserialize, Serialize};

/// `GET /v1/health`: the protocol version and the public key (hex) that signs ingest receipts
/// and unlock credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub protocol: u32,
    /// `None` from a vault that signs nothing (an older version).
    #[serde(default)]
    pub receipt_key: Option<String>,
}

/// `POST /v1/credentials`: a one-use registration secret and its expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub secret: String,
    pub expires: i64,
}

/// `POST /v1/register`: a machine registers with a credentials file's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub secret: String,
    pub name: String,
}

/// The answer to a registration: the machine's ID and token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub machine: String,
    pub token: String,
}

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    /// The token stops working this many seconds after it is made; `None`: when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// The answer to a new user: its token, shown once, and when it expires (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAdded {
    pub name: String,
    pub role: String,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `GET /v1/users` (owners): a user and its token's life (times RFC 3339). A user whose token
/// is revoked or expired can do nothing until an owner removes it and adds it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub role: String,
    pub created: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
    /// The token's last use (recorded at most once a minute).
    pub last_used: Option<String>,
}

/// `PUT /v1/users/{name}/password`: a dashboard password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPassword {
    pub password: String,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

/// `POST /v1/users/{name}/unlock` (owners): the user's failed dashboard logins are forgotten and
/// its lockout, if any, is over; `was_locked` says whether it was locked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUnlocked {
    pub name: String,
    pub was_locked: bool,
}

/// `GET /v1/machines`: one registered machine, its traffic and its latest storage sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: String,
    pub name: String,
    pub created: String,
    pub bytes_received: u64,
    pub objects_received: u64,
    pub bytes_sent: u64,
    pub objects_sent: u64,
    pub stored_bytes: Option<u64>,
    pub protected_bytes: Option<u64>,
    /// When the sizes were sampled (RFC 3339).
    pub sampled: Option<String>,
    /// The end of its last backup that did not fail (RFC 3339).
    #[serde(default)]
    pub last_backup: Option<String>,
    /// As the dashboard says it: `ok`, `backing up`, `no backup yet`, `last backup failed: ...`.
    #[serde(default)]
    pub state: Option<String>,
}

/// `POST /v1/machines/{id}/jobs`: a machine opens a job of `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    pub kind: String,
}

/// The answer to a new job: its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOpened {
    pub id: i64,
}

/// `POST /v1/machines/{id}/jobs/{job}`: what an agent reports about a job, a heartbeat
/// (`running`) or its end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobUpdate {
    /// running | completed | completed-with-errors | failed
    pub state: String,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub errors: Vec<String>,
    /// A backup's end: the size of the data it covers (the machine's protected size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// A backup's end: the recovery point it made (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_point: Option<String>,
    /// A backup's end: the recovery point's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The longest error message a report carries whole (longer ones are cut).
pub const REPORTED_ERROR_CHARS: usize = 300;

/// `errors` as a report to the vault carries them: at most `most` messages (the last of them
/// counting those left out), each cut to [`REPORTED_ERROR_CHARS`], so a report stays well under
/// the vault's limit on a JSON body (64 KiB) however many errors there were; the agent prints
/// or logs them all.
pub fn reported_errors(errors: &[String], most: usize) -> Vec<String> {
    let cut = |e: &String| match e.char_indices().nth(REPORTED_ERROR_CHARS) {
        Some((at, _)) => format!("{}...", &e[..at]),
        None => e.clone(),
    };
    if errors.len() <= most {
        return errors.iter().map(cut).collect();
    }
    let kept = most.saturating_sub(1);
    let mut out: Vec<String> = errors[..kept].iter().map(cut).collect();
    out.push(format!("... and {} more error(s), not reported to the vault", errors.len() - kept));
    out
}

/// `GET /v1/jobs`: one job, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    pub id: i64,
    /// The machine's name.
    pub machine: String,
    pub kind: String,
    pub state: String,
    /// RFC 3339; `end` is `null` while the job runs.
    pub start: String,
    pub end: Option<String>,
    pub bytes: i64,
    pub files: i64,
    pub errors: Vec<String>,
}

/// `POST /v1/machines/{id}/retention`: what one retention run did (recovery points by ID, hex).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionReport {
    pub recovery_points: u64,
    pub kept: u64,
    pub soft_deleted: Vec<String>,
    pub purged: Vec<String>,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Why garbage was not collected this time, if it was not.
    pub gc_skipped: Option<String>,
}

/// `GET /v1/machines/{id}/deleted`: a soft-deleted recovery point (ID hex; times in Unix
/// seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftDeletedPoint {
    pub id: String,
    pub deleted_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// `POST /v1/machines/{id}/deleted/{rp}/undelete`: the recovery point put back (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeleted {
    pub undeleted: String,
}

/// The body of every error answer (any non-2xx status): what went wrong, for a person to read
/// (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_errors_are_few_and_short() {
        let many: Vec<String> = (0..1000).map(|i| format!("{i}: {}", "é".repeat(1000))).collect();
        let r = reported_errors(&many, 50);
        assert_eq!(r.len(), 50);
        assert!(r[..49].iter().all(|e| e.chars().count() == REPORTED_ERROR_CHARS + 3), "{:?}", r[0]);
        assert_eq!(r[49], "... and 951 more error(s), not reported to the vault");
        assert!(serde_json::to_vec(&r).unwrap().len() < 40 * 1024);
        let few = vec!["a".to_string(), "b".to_string()];
        assert_eq!(reported_errors(&few, 2), few);
        assert_eq!(reported_errors(&few, 1), vec!["... and 2 more error(s), not reported to the vault".to_string()]);
    }

    fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T, text: &str) {
        assert_eq!(serde_json::to_string(v).unwrap(), text);
        assert_eq!(&serde_json::from_str::<T>(text).unwrap(), v);
    }

    #[test]
    fn fixed_json() {
        round_trip(&Health { protocol: 1, receipt_key: Some("ab".into()) }, r#"{"protocol":1,"receipt_key":"ab"}"#);
        round_trip(&Credentials { secret: "s".into(), expires: 9 }, r#"{"secret":"s","expires":9}"#);
        round_trip(&Undeleted { undeleted: "ab".into() }, r#"{"undeleted":"ab"}"#);
        round_trip(
            &NewUser { name: "u".into(), role: "reader".into(), expires_in_s: Some(60) },
            r#"{"name":"u","role":"reader","expires_in_s":60}"#,
        );
        round_trip(
            &UserView {
                name: "u".into(),
                role: "reader".into(),
                created: "2026-12-07T00:00:00Z".into(),
                expires: Some("2026-12-08T00:00:00Z".into()),
                revoked: None,
                last_used: None,
            },
            r#"{"name":"u","role":"reader","created":"2026-12-07T00:00:00Z","expires":"2026-12-08T00:00:00Z","revoked":null,"last_used":null}"#,
        );
        round_trip(&ErrorReply { error: "no".into() }, r#"{"error":"no"}"#);
        round_trip(&Registered { machine: "m".into(), token: "t".into() }, r#"{"machine":"m","token":"t"}"#);
        round_trip(&UserUnlocked { name: "alice".into(), was_locked: true }, r#"{"name":"alice","was_locked":true}"#);
        round_trip(
            &UserAdded { name: "u".into(), role: "reader".into(), token: "t".into(), expires: None },
            r#"{"name":"u","role":"reader","token":"t"}"#,
        );
        let m = MachineView {
            id: "m".into(),
            name: "web".into(),
            created: "2026-11-30T00:00:00Z".into(),
            bytes_received: 1,
            objects_received: 2,
            bytes_sent: 3,
            objects_sent: 4,
            stored_bytes: Some(5),
            protected_bytes: None,
            sampled: None,
            last_backup: Some("2026-11-30T01:00:00Z".into()),
            state: Some("ok".into()),
        };
        round_trip(
            &m,
            r#"{"id":"m","name":"web","created":"2026-11-30T00:00:00Z","bytes_received":1,"objects_received":2,"bytes_sent":3,"objects_sent":4,"stored_bytes":5,"protected_bytes":null,"sampled":null,"last_backup":"2026-11-30T01:00:00Z","state":"ok"}"#,
        );
        let j = JobView {
            id: 7,
            machine: "web".into(),
            kind: "backup".into(),
            state: "failed".into(),
            start: "2026-11-30T00:00:00Z".into(),
            end: None,
            bytes: 0,
            files: 0,
            errors: vec!["the agent stopped reporting".into()],
        };
        round_trip(
            &j,
            r#"{"id":7,"machine":"web","kind":"backup","state":"failed","start":"2026-11-30T00:00:00Z","end":null,"bytes":0,"files":0,"errors":["the agent stopped reporting"]}"#,
        );
        let r = RetentionReport {
            recovery_points: 3,
            kept: 1,
            soft_deleted: vec!["a".into()],
            purged: vec![],
            gc_skipped: Some("why".into()),
            ..Default::default()
        };
        round_trip(
            &r,
            r#"{"recovery_points":3,"kept":1,"soft_deleted":["a"],"purged":[],"packs_deleted":0,"bytes_deleted":0,"gc_skipped":"why"}"#,
        );
        round_trip(
            &SoftDeletedPoint { id: "a".into(), deleted_at: Some(1), expires_at: None },
            r#"{"id":"a","deleted_at":1,"expires_at":null}"#,
        );
    }

    #[test]
    fn job_updates_send_what_they_have() {
        let beat = JobUpdate { state: "running".into(), ..Default::default() };
        assert_eq!(serde_json::to_string(&beat).unwrap(), r#"{"state":"running","bytes":0,"files":0,"errors":[],"tags":[]}"#);
        let end = JobUpdate { total_bytes: Some(9), recovery_point: Some("ab".into()), tags: vec!["t".into()], ..beat };
        let text = r#"{"state":"running","bytes":0,"files":0,"errors":[],"total_bytes":9,"recovery_point":"ab","tags":["t"]}"#;
        assert_eq!(serde_json::to_string(&end).unwrap(), text);
        assert_eq!(serde_json::from_str::<JobUpdate>(text).unwrap(), end);
        assert_eq!(serde_json::from_str::<JobUpdate>(r#"{"state":"running"}"#).unwrap().tags.len(), 0);
    }
}
