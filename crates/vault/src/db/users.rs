//! Users: the owner made at first start, users added by the owner, and the principal (user or
//! machine) a bearer token belongs to.

use anyhow::Context;
use sqlx::Row;

use super::{new_token, now_rfc3339, token_hash, Db, Principal};
use crate::Result;
use crate::Role;

impl Db {
    pub async fn has_owner(&self) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM users WHERE role = 'owner' LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(row.is_some())
    }

    /// Creates the user `owner` (role owner) unless an owner exists; returns its token when this
    /// call made it. One statement, so of several servers starting at once on one database
    /// exactly one makes the owner: the others find it (or collide on the name and do nothing).
    pub async fn create_owner_if_none(&self) -> Result<Option<String>> {
        let token = new_token();
        let r = sqlx::query(
            "INSERT INTO users (name, role, token_hash, created) SELECT $1, $2, $3, $4 \
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'owner') ON CONFLICT (name) DO NOTHING",
        )
        .bind("owner")
        .bind(Role::Owner.as_str())
        .bind(token_hash(&token))
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await
        .context("create the owner user")?;
        Ok((r.rows_affected() == 1).then_some(token))
    }

    /// Adds a user; returns the user's token (shown once).
    pub async fn add_user(&self, name: &str, role: Role) -> Result<String> {
        let token = new_token();
        sqlx::query("INSERT INTO users (name, role, token_hash, created) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(role.as_str())
            .bind(token_hash(&token))
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await
            .with_context(|| format!("add user {name:?} (does the name exist already?)"))?;
        Ok(token)
    }

    /// The principal a token belongs to, if any.
    pub async fn principal(&self, token: &str) -> Result<Option<Principal>> {
        let h = token_hash(token);
        if let Some(row) = sqlx::query("SELECT name, role FROM users WHERE token_hash = $1").bind(&h).fetch_optional(&self.pool).await? {
            let role: String = row.get(1);
            let role = Role::parse(&role).with_context(|| format!("unknown role {role:?} in the database"))?;
            return Ok(Some(Principal::User { name: row.get(0), role }));
        }
        let m = sqlx::query("SELECT id FROM machines WHERE token_hash = $1").bind(&h).fetch_optional(&self.pool).await?;
        Ok(m.map(|row| Principal::Machine { id: row.get(0) }))
    }

    /// How many users there are.
    pub(crate) async fn user_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?;
        Ok(row.get::<i64, _>(0).max(0) as u64)
    }

    /// Is there a user `name`?
    pub(crate) async fn user_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM users WHERE name = $1").bind(name).fetch_optional(&self.pool).await?.is_some())
    }
}
