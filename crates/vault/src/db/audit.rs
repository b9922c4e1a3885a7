//! The audit log: who did what to which object (device preparation, status changes and
//! erasure), appended to and never changed.

use ferry_api::AuditEntry;
use sqlx::Row;

use super::{rfc3339, Db};
use crate::Result;

impl Db {
    /// Appends a line to the audit log.
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &serde_json::Value) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        sqlx::query("INSERT INTO audit (time, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(now)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The audit log (of one target, if given), oldest first.
    pub async fn audit_log(&self, target: Option<&str>) -> Result<Vec<AuditEntry>> {
        let base = "SELECT id, time, actor, action, target, detail FROM audit";
        let rows = match target {
            Some(t) => sqlx::query(&format!("{base} WHERE target = $1 ORDER BY id")).bind(t).fetch_all(&self.pool).await?,
            None => sqlx::query(&format!("{base} ORDER BY id")).fetch_all(&self.pool).await?,
        };
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                time: rfc3339(r.get(1)),
                actor: r.get(2),
                action: r.get(3),
                target: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }
}
