//! Users: the owner made at first start, users added by the owner, and the principal (user or
//! machine) a bearer token belongs to.

use anyhow::Context;
use sqlx::Row;

use ferry_api::UserView;

use super::{new_token, now_rfc3339, rfc3339, token_hash, Db, Principal};
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

    /// Adds a user whose token is valid until `expires` (Unix seconds; `None`: until revoked);
    /// returns the user's token (shown once).
    pub async fn add_user(&self, name: &str, role: Role, expires: Option<i64>) -> Result<String> {
        let token = new_token();
        sqlx::query("INSERT INTO users (name, role, token_hash, created, expires) VALUES ($1, $2, $3, $4, $5)")
            .bind(name)
            .bind(role.as_str())
            .bind(token_hash(&token))
            .bind(now_rfc3339())
            .bind(expires)
            .execute(&self.pool)
            .await
            .with_context(|| format!("add user {name:?} (does the name exist already?)"))?;
        Ok(token)
    }

    /// The principal a token belongs to, if any: a user's token that is neither revoked nor
    /// expired (its use recorded, at most once a minute), or a machine's that is not revoked.
    pub async fn principal(&self, token: &str) -> Result<Option<Principal>> {
        let h = token_hash(token);
        let now = chrono::Utc::now().timestamp();
        let user = sqlx::query(
            "SELECT name, role, last_used FROM users WHERE token_hash = $1 AND revoked IS NULL AND (expires IS NULL OR expires > $2)",
        )
        .bind(&h)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = user {
            let (name, role): (String, String) = (row.get(0), row.get(1));
            let role = Role::parse(&role).with_context(|| format!("unknown role {role:?} in the database"))?;
            // A write only when the recorded use is a minute old: not one per request.
            if row.get::<Option<i64>, _>(2).is_none_or(|t| t < now - 60) {
                sqlx::query("UPDATE users SET last_used = $1 WHERE name = $2").bind(now).bind(&name).execute(&self.pool).await?;
            }
            return Ok(Some(Principal::User { name, role }));
        }
        let m =
            sqlx::query("SELECT id FROM machines WHERE token_hash = $1 AND revoked IS NULL").bind(&h).fetch_optional(&self.pool).await?;
        Ok(m.map(|row| Principal::Machine { id: row.get(0) }))
    }

    /// Every user and its token's dates, by name.
    pub async fn users(&self) -> Result<Vec<UserView>> {
        let rows =
            sqlx::query("SELECT name, role, created, expires, revoked, last_used FROM users ORDER BY name").fetch_all(&self.pool).await?;
        let time = |t: Option<i64>| t.map(rfc3339);
        Ok(rows
            .into_iter()
            .map(|r| UserView {
                name: r.get(0),
                role: r.get(1),
                created: r.get(2),
                expires: time(r.get(3)),
                revoked: time(r.get(4)),
                last_used: time(r.get(5)),
            })
            .collect())
    }

    /// Revokes user `name`'s token (at `now`) and ends its dashboard sessions; `Ok(false)` if
    /// there is no such user. The last owner whose token works is not revoked (nobody could
    /// manage the vault any more).
    pub async fn revoke_user(&self, name: &str, now: i64) -> Result<Result<bool, String>> {
        if let Some(refused) = self.last_owner(name, now).await? {
            return Ok(Err(refused));
        }
        let r = sqlx::query("UPDATE users SET revoked = $1 WHERE name = $2 AND revoked IS NULL")
            .bind(now)
            .bind(name)
            .execute(&self.pool)
            .await?;
        self.end_sessions_of(name).await?;
        Ok(Ok(r.rows_affected() == 1 || self.user_exists(name).await?))
    }

    /// Removes user `name`, its password and its sessions; `Ok(false)` if there is no such user.
    /// The last owner whose token works is not removed.
    pub async fn remove_user(&self, name: &str, now: i64) -> Result<Result<bool, String>> {
        if let Some(refused) = self.last_owner(name, now).await? {
            return Ok(Err(refused));
        }
        self.end_sessions_of(name).await?;
        sqlx::query("DELETE FROM user_passwords WHERE name = $1").bind(name).execute(&self.pool).await?;
        let r = sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(&self.pool).await?;
        Ok(Ok(r.rows_affected() == 1))
    }

    /// Why `name` may not lose its token: it is the only owner whose token still works.
    async fn last_owner(&self, name: &str, now: i64) -> Result<Option<String>> {
        let live = "role = 'owner' AND revoked IS NULL AND (expires IS NULL OR expires > $1)";
        let owners = sqlx::query(&format!("SELECT name FROM users WHERE {live}")).bind(now).fetch_all(&self.pool).await?;
        let owners: Vec<String> = owners.into_iter().map(|r| r.get(0)).collect();
        Ok((owners == [name]).then(|| {
            format!(
                "{name} is the vault's only owner with a working token: add another owner first (`ferry vault user add NAME --role owner`)"
            )
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn tokens_expire_are_revoked_and_record_their_use() {
        let dir = tempfile::tempdir().unwrap();
        block_on(async {
            let db = Db::open_file(&dir.path().join("vault.db")).await.unwrap();
            let owner = db.create_owner_if_none().await.unwrap().unwrap();
            let now = chrono::Utc::now().timestamp();
            let reader = db.add_user("r", Role::Reader, None).await.unwrap();
            let short = db.add_user("temp", Role::Reader, Some(now - 1)).await.unwrap();
            assert!(db.principal(&short).await.unwrap().is_none(), "expired");
            assert!(db.principal(&reader).await.unwrap().is_some());
            let users = db.users().await.unwrap();
            let r = users.iter().find(|u| u.name == "r").unwrap();
            assert!(r.last_used.is_some() && r.revoked.is_none() && r.expires.is_none(), "{r:?}");
            assert!(users.iter().find(|u| u.name == "temp").unwrap().expires.is_some());

            // Revoked: refused at once, sessions ended; listed as revoked.
            db.add_session("s1", "r", now, now + 3600, "c").await.unwrap();
            assert!(db.session("s1", now).await.unwrap().is_some());
            assert_eq!(db.revoke_user("r", now).await.unwrap(), Ok(true));
            assert!(db.principal(&reader).await.unwrap().is_none());
            assert!(db.session("s1", now).await.unwrap().is_none());
            assert!(db.users().await.unwrap().iter().find(|u| u.name == "r").unwrap().revoked.is_some());
            assert_eq!(db.revoke_user("nobody", now).await.unwrap(), Ok(false));

            // The only working owner keeps its token; with a second owner it can go.
            assert!(db.revoke_user("owner", now).await.unwrap().unwrap_err().contains("only owner"));
            assert!(db.remove_user("owner", now).await.unwrap().is_err());
            let second = db.add_user("owner2", Role::Owner, None).await.unwrap();
            assert_eq!(db.remove_user("owner", now).await.unwrap(), Ok(true));
            assert!(db.principal(&owner).await.unwrap().is_none());
            assert!(db.principal(&second).await.unwrap().is_some());
            assert_eq!(db.remove_user("r", now).await.unwrap(), Ok(true));
            assert!(!db.user_exists("r").await.unwrap());

            // A revoked machine is refused, registers again under its name and keeps its ID.
            let secret = db.add_registration(now + 3600).await.unwrap();
            let (id, token) = db.register(&secret, "m1", now).await.unwrap().unwrap();
            assert!(db.revoke_machine(&id, now).await.unwrap());
            assert!(db.principal(&token).await.unwrap().is_none());
            assert_eq!(db.machine_named("m1").await.unwrap(), Some((id.clone(), true)));
            let secret = db.add_registration(now + 3600).await.unwrap();
            let (again, token2) = db.register(&secret, "m1", now).await.unwrap().unwrap();
            assert_eq!(again, id);
            assert_eq!(db.principal(&token2).await.unwrap(), Some(Principal::Machine { id }));
            assert!(db.principal(&token).await.unwrap().is_none(), "the old token stays refused");
        });
    }
}
