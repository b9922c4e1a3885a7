//! Facts every server of the vault must agree on, by name (migration 4): today the receipt key
//! of the vault's secret (crate::secrets), recorded by the first server to start.

use sqlx::Row;

use super::Db;
use crate::Result;

impl Db {
    /// The value recorded under `name`, if any.
    pub(crate) async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM vault_settings WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records `value` under `name` unless a value is recorded already (servers starting at
    /// once: the first wins); returns the value recorded.
    pub(crate) async fn record_setting(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO vault_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(self.setting(name).await?.unwrap_or_else(|| value.to_string()))
    }
}
