//! Machines: one-time registration secrets, the machines they registered, each machine's
//! backup policy and the traffic counters of its requests.

use anyhow::Context;
use sqlx::Row;

use super::{new_token, now_rfc3339, token_hash, Db};
use crate::Result;

impl Db {
    /// A one-time registration secret valid until `expires` (Unix seconds).
    pub async fn add_registration(&self, expires: i64) -> Result<String> {
        let secret = new_token();
        sqlx::query("INSERT INTO registrations (secret_hash, expires) VALUES ($1, $2)")
            .bind(token_hash(&secret))
            .bind(expires)
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// Uses up a registration secret and creates the machine: `Ok(None)` when the secret is
    /// unknown, used or expired. Returns the machine's ID and token.
    ///
    /// One-time even with several servers on one PostgreSQL database, at its default isolation
    /// (READ COMMITTED): the UPDATE locks the secret's row, a concurrent UPDATE of the same row
    /// waits for this transaction and then re-checks `used = 0` on the committed row, so it
    /// changes nothing. If the machine cannot be created (its name is taken), the transaction
    /// rolls back and the secret stays usable.
    pub async fn register(&self, secret: &str, name: &str, now: i64) -> Result<Option<(String, String)>> {
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query("UPDATE registrations SET used = 1 WHERE secret_hash = $1 AND used = 0 AND expires > $2")
            .bind(token_hash(secret))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if used.rows_affected() != 1 {
            return Ok(None);
        }
        let token = new_token();
        // A machine whose token was revoked registers again under its name: same ID, so its
        // repository and recovery points are its own again; a new token.
        let again = sqlx::query("UPDATE machines SET token_hash = $1, revoked = NULL WHERE name = $2 AND revoked IS NOT NULL")
            .bind(token_hash(&token))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if again.rows_affected() == 1 {
            let id: String = sqlx::query("SELECT id FROM machines WHERE name = $1").bind(name).fetch_one(&mut *tx).await?.get(0);
            tx.commit().await?;
            return Ok(Some((id, token)));
        }
        let id = hex::encode(ferry_crypto::random_bytes::<16>());
        sqlx::query("INSERT INTO machines (id, name, token_hash, created) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(token_hash(&token))
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await
            .with_context(|| format!("a machine named {name:?} is already registered"))?;
        tx.commit().await?;
        Ok(Some((id, token)))
    }

    /// The machine named `name`: its ID and whether its token is revoked.
    pub async fn machine_named(&self, name: &str) -> Result<Option<(String, bool)>> {
        let row = sqlx::query("SELECT id, revoked FROM machines WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| (r.get(0), r.get::<Option<i64>, _>(1).is_some())))
    }

    /// Revokes machine `id`'s token at `now`: its requests are refused until it registers again
    /// (with new credentials, under the same name); its repository stays. `false`: no such
    /// machine.
    pub async fn revoke_machine(&self, id: &str, now: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE machines SET revoked = COALESCE(revoked, $1) WHERE id = $2").bind(now).bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_policy(&self, machine: &str, policy: &ferry_api::BackupPolicy) -> Result<()> {
        let text = serde_json::to_string(policy)?;
        sqlx::query(
            "INSERT INTO policies (machine, policy, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (machine) DO UPDATE SET policy = excluded.policy, updated = excluded.updated",
        )
        .bind(machine)
        .bind(text)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The machine's policy; `None` when it has none, or when the one stored does not read as a
    /// policy (logged: set it again with `ferry vault policy set`).
    pub async fn policy(&self, machine: &str) -> Result<Option<ferry_api::BackupPolicy>> {
        let row = sqlx::query("SELECT policy FROM policies WHERE machine = $1").bind(machine).fetch_optional(&self.pool).await?;
        Ok(row.and_then(|r| match serde_json::from_str(&r.get::<String, _>(0)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("the stored policy of machine {machine} does not read ({e}); set it again with `ferry vault policy set`");
                None
            }
        }))
    }

    /// Counts what a machine's requests carried: object bytes received (uploads) and sent
    /// (downloads). The vault's byte counters, per machine, since its registration.
    pub async fn add_traffic(&self, machine: &str, bytes_in: u64, objects_in: u64, bytes_out: u64, objects_out: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO traffic (machine, bytes_in, objects_in, bytes_out, objects_out) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (machine) DO UPDATE SET bytes_in = traffic.bytes_in + excluded.bytes_in, \
             objects_in = traffic.objects_in + excluded.objects_in, bytes_out = traffic.bytes_out + excluded.bytes_out, \
             objects_out = traffic.objects_out + excluded.objects_out",
        )
        .bind(machine)
        .bind(bytes_in as i64)
        .bind(objects_in as i64)
        .bind(bytes_out as i64)
        .bind(objects_out as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every machine's counters: machine ID -> (bytes in, objects in, bytes out, objects out).
    pub async fn traffic(&self) -> Result<std::collections::HashMap<String, [u64; 4]>> {
        let rows = sqlx::query("SELECT machine, bytes_in, objects_in, bytes_out, objects_out FROM traffic").fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let n = |i: usize| r.get::<i64, _>(i).max(0) as u64;
                (r.get::<String, _>(0), [n(1), n(2), n(3), n(4)])
            })
            .collect())
    }

    /// Every machine: (id, name, created).
    pub async fn machines(&self) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT id, name, created FROM machines ORDER BY name").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Is `id` a registered machine?
    pub(crate) async fn machine_exists(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM machines WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.is_some())
    }

    /// Unused registration secrets expiring after `after` and before `before`: (hash, expiry).
    pub(crate) async fn expiring_registrations(&self, after: i64, before: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT secret_hash, expires FROM registrations WHERE used = 0 AND expires > $1 AND expires < $2")
            .bind(after)
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// How many machines are registered.
    pub(crate) async fn machine_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM machines").fetch_one(&self.pool).await?;
        Ok(row.get::<i64, _>(0).max(0) as u64)
    }
}
