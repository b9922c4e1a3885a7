//! Alerts sent: the key of each alert the vault sent by webhook or e-mail, so that every
//! server on one database, and every restart, sends each alert once.

use super::Db;
use crate::Result;

impl Db {
    /// Which of `keys` were sent already.
    pub(crate) async fn sent(&self, keys: &[&str]) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for k in keys {
            if sqlx::query("SELECT 1 FROM alerts_sent WHERE key = $1").bind(*k).fetch_optional(&self.pool).await?.is_some() {
                out.insert(k.to_string());
            }
        }
        Ok(out)
    }

    /// Records that the alert `key` was sent.
    pub(crate) async fn mark_sent(&self, key: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO alerts_sent (key, time) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
