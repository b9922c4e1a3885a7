//! Failed dashboard logins and the lockouts they cause, per user name and per client address
//! (crate::dashboard::login decides the limits). Kept in the database, so several vault
//! servers on one PostgreSQL database count the same failures and honour the same lockouts.
//!
//! One row per (scope, key): the failures counted since `since` (a window that restarts once it
//! is older than the window length), and `locked_until` (Unix seconds; 0: not locked).

use sqlx::Row;

use super::Db;
use crate::Result;

/// What a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The user name given (whether or not such a user exists, so that a lockout says nothing
    /// about which names exist).
    User,
    /// The client's IP address.
    Address,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Address => "address",
        }
    }
}

/// How failures turn into a lockout: `failures` within `window_s` seconds lock for
/// `lock_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    pub failures: i64,
    pub window_s: i64,
    pub lock_s: i64,
}

impl Db {
    /// Until when logins as `user` or from `address` are locked (Unix seconds), if either is
    /// locked at `now`.
    pub(crate) async fn login_locked_until(&self, user: &str, address: &str, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(locked_until) FROM login_failures \
             WHERE (scope = $1 AND key = $2) OR (scope = $3 AND key = $4)",
        )
        .bind(Scope::User.as_str())
        .bind(user)
        .bind(Scope::Address.as_str())
        .bind(address)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<Option<i64>, _>(0).filter(|until| *until > now))
    }

    /// Counts a failed login against `key` at `now`. Returns the failures counted in the
    /// window, and `Some(until)` when this failure reached the limit and locked `key` (exactly
    /// one caller sees that, however many servers count at once).
    pub(crate) async fn login_failed(&self, scope: Scope, key: &str, now: i64, l: Limit) -> Result<(i64, Option<i64>)> {
        let window_start = now - l.window_s;
        // Rows whose window and lock are both over say nothing any more.
        sqlx::query("DELETE FROM login_failures WHERE since <= $1 AND locked_until <= $2")
            .bind(window_start)
            .bind(now)
            .execute(&self.pool)
            .await?;
        // Every SET expression reads the row as it was, so both restart an old window.
        let row = sqlx::query(
            "INSERT INTO login_failures (scope, key, failures, since, locked_until) VALUES ($1, $2, 1, $3, 0) \
             ON CONFLICT (scope, key) DO UPDATE SET \
             failures = CASE WHEN login_failures.since <= $4 THEN 1 ELSE login_failures.failures + 1 END, \
             since = CASE WHEN login_failures.since <= $4 THEN $3 ELSE login_failures.since END \
             RETURNING failures",
        )
        .bind(scope.as_str())
        .bind(key)
        .bind(now)
        .bind(window_start)
        .fetch_one(&self.pool)
        .await?;
        let failures: i64 = row.get(0);
        if failures < l.failures {
            return Ok((failures, None));
        }
        // The lock starts a new count; of concurrent callers over the limit, the first one's
        // update makes the others' condition false.
        let until = now + l.lock_s;
        let locked = sqlx::query(
            "UPDATE login_failures SET locked_until = $3, failures = 0, since = $4 \
             WHERE scope = $1 AND key = $2 AND failures >= $5",
        )
        .bind(scope.as_str())
        .bind(key)
        .bind(until)
        .bind(now)
        .bind(l.failures)
        .execute(&self.pool)
        .await?;
        Ok((failures, (locked.rows_affected() == 1).then_some(until)))
    }

    /// Forgets the failures and the lockout of `key` (an owner's unlock; a user's successful
    /// login clears its own count). Returns whether `key` was locked at `now`.
    pub(crate) async fn clear_login_failures(&self, scope: Scope, key: &str, now: i64) -> Result<bool> {
        let was = sqlx::query("SELECT locked_until FROM login_failures WHERE scope = $1 AND key = $2")
            .bind(scope.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .is_some_and(|r| r.get::<i64, _>(0) > now);
        sqlx::query("DELETE FROM login_failures WHERE scope = $1 AND key = $2").bind(scope.as_str()).bind(key).execute(&self.pool).await?;
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_postgres, on_sqlite};
    use super::*;

    const L: Limit = Limit { failures: 3, window_s: 100, lock_s: 50 };

    async fn failures_lock_and_clear(db: Db, tag: String) {
        let (alice, addr) = (format!("alice{tag}"), format!("10.0.0.1{tag}"));
        let t = 1_000;
        assert_eq!(db.login_locked_until(&alice, &addr, t).await.unwrap(), None);
        assert_eq!(db.login_failed(Scope::User, &alice, t, L).await.unwrap(), (1, None));
        assert_eq!(db.login_failed(Scope::User, &alice, t + 1, L).await.unwrap(), (2, None));
        assert_eq!(db.login_failed(Scope::User, &alice, t + 2, L).await.unwrap(), (3, Some(t + 52)), "the third locks");
        assert_eq!(db.login_locked_until(&alice, "elsewhere", t + 3).await.unwrap(), Some(t + 52));
        assert_eq!(db.login_locked_until(&format!("bob{tag}"), &addr, t + 3).await.unwrap(), None, "another user, another address");
        assert_eq!(db.login_locked_until(&alice, &addr, t + 52).await.unwrap(), None, "the lock ends");
        let bob = format!("bob{tag}");
        // Addresses count apart from users; an owner's unlock clears one key only.
        for i in 0..3 {
            db.login_failed(Scope::Address, &addr, t + i, L).await.unwrap();
        }
        assert_eq!(db.login_locked_until(&bob, &addr, t + 5).await.unwrap(), Some(t + 52));
        assert!(db.clear_login_failures(Scope::User, &alice, t + 5).await.unwrap(), "alice was locked");
        assert!(!db.clear_login_failures(Scope::User, &alice, t + 5).await.unwrap());
        assert_eq!(db.login_locked_until(&alice, "elsewhere", t + 5).await.unwrap(), None);
        assert_eq!(db.login_locked_until(&alice, &addr, t + 5).await.unwrap(), Some(t + 52), "the address stays locked");
        // A window restarts once it is older than its length.
        db.login_failed(Scope::User, &bob, t, L).await.unwrap();
        db.login_failed(Scope::User, &bob, t + 1, L).await.unwrap();
        assert_eq!(db.login_failed(Scope::User, &bob, t + 150, L).await.unwrap(), (1, None));
    }

    #[test]
    fn failures_lock_and_clear_on_sqlite() {
        on_sqlite(failures_lock_and_clear);
    }

    #[test]
    fn failures_lock_and_clear_on_postgres() {
        on_postgres(failures_lock_and_clear);
    }

    /// Several servers counting one user's failures at once lock it once. (Its time is chosen
    /// so that neither test's clean-up of old rows removes the other's in the shared database.)
    #[test]
    fn concurrent_failures_lock_once_on_postgres() {
        on_postgres(|db, tag| async move {
            let user = format!("carol{tag}");
            let l = Limit { failures: 20, window_s: 900, lock_s: 900 };
            let tasks: Vec<_> = (0..30)
                .map(|_| {
                    let (db, user) = (db.clone(), user.clone());
                    tokio::spawn(async move { db.login_failed(Scope::User, &user, 1_100, l).await.unwrap().1 })
                })
                .collect();
            let mut locks = 0;
            for t in tasks {
                locks += usize::from(t.await.unwrap().is_some());
            }
            assert_eq!(locks, 1, "30 failures at once over a limit of 20 lock once");
        });
    }
}
