//! Dashboard logins: users' password hashes (made and checked by crate::dashboard, Argon2id)
//! and sessions, kept by the hash of their cookie with their user, expiry and CSRF token.

use sqlx::Row;

use super::{token_hash, Db};
use crate::Result;
use crate::Role;

impl Db {
    /// Stores user `name`'s password hash and its salt (hex), replacing any earlier one.
    pub(crate) async fn store_password(&self, name: &str, salt: &str, hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_passwords (name, salt, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET salt = excluded.salt, hash = excluded.hash",
        )
        .bind(name)
        .bind(salt)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An existing user's password salt and hash (hex), if the user has a password.
    pub(crate) async fn stored_password(&self, name: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT salt, hash FROM user_passwords p JOIN users u ON u.name = p.name WHERE p.name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Starts session `id` of `user` until `expires`, and forgets the sessions expired by `now`.
    pub(crate) async fn add_session(&self, id: &str, user: &str, now: i64, expires: i64, csrf: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires < $1").bind(now).execute(&self.pool).await?;
        sqlx::query("INSERT INTO sessions (id_hash, user_name, expires, csrf) VALUES ($1, $2, $3, $4)")
            .bind(token_hash(id))
            .bind(user)
            .bind(expires)
            .bind(csrf)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user and CSRF token of a live session (the user must still exist).
    pub(crate) async fn session(&self, id: &str, now: i64) -> Result<Option<(String, Role, String)>> {
        let row = sqlx::query(
            "SELECT s.user_name, u.role, s.csrf FROM sessions s JOIN users u ON u.name = s.user_name \
             WHERE s.id_hash = $1 AND s.expires >= $2 AND u.revoked IS NULL AND (u.expires IS NULL OR u.expires > $2)",
        )
        .bind(token_hash(id))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| Some((r.get::<String, _>(0), Role::parse(&r.get::<String, _>(1))?, r.get::<String, _>(2)))))
    }

    /// Ends every session of `user` (its token revoked, or the user removed).
    pub(crate) async fn end_sessions_of(&self, user: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE user_name = $1").bind(user).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends session `id` (logout).
    pub(crate) async fn end_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(token_hash(id)).execute(&self.pool).await?;
        Ok(())
    }
}
