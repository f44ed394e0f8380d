//! Counters behind the login limits and the submission rate limit, in the `throttle` table
//! so that several web nodes on one database share them.
//!
//! Check and count happen in one transaction that locks the rows it reads (PostgreSQL:
//! `SELECT ... FOR UPDATE`; SQLite: the transaction's first statement is a write, which takes
//! the database's write lock), so parallel requests are counted one after another and
//! cannot all pass a check that each alone would pass. Rows are always locked in the same
//! order (address, account, pair) so two transactions cannot deadlock.
use super::{Backend, Db};
use crate::error::Result;
use sqlx::{Any, Row, Transaction};

/// One row of `throttle`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub hits: i64,
    pub window_start: i64,
    pub locked_until: i64,
}

impl Counter {
    /// Hits in the fixed window of `window_ms` that contains `now` (0 once a new one began).
    pub fn hits_in_window(&self, now: i64, window_ms: i64) -> i64 {
        if self.window_start == window_of(now, window_ms) {
            self.hits
        } else {
            0
        }
    }
}

/// Start of the fixed window of `window_ms` that contains `now`.
pub fn window_of(now: i64, window_ms: i64) -> i64 {
    now - now.rem_euclid(window_ms)
}

/// A transaction holding the rows it has read locked until commit.
pub struct Locked<'a> {
    tx: Transaction<'a, Any>,
    backend: Backend,
}

impl Db {
    pub async fn lock_counters(&self) -> Result<Locked<'static>> {
        Ok(Locked { tx: self.pool.begin().await?, backend: self.backend })
    }

    /// Drops counters idle for `max_age_ms` whose lock-out (if any) is over.
    pub async fn prune_counters(&self, now: i64, max_age_ms: i64) -> Result<()> {
        sqlx::query("DELETE FROM throttle WHERE window_start < $1 AND locked_until < $2")
            .bind(now - max_age_ms)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Locked<'_> {
    /// Reads (creating when missing) and locks the counter `key`.
    pub async fn get(&mut self, key: &str) -> Result<Counter> {
        sqlx::query(
            "INSERT INTO throttle (key, hits, window_start, locked_until) VALUES ($1, 0, 0, 0) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .execute(&mut *self.tx)
        .await?;
        let sql = match self.backend {
            Backend::Postgres => "SELECT hits, window_start, locked_until FROM throttle WHERE key = $1 FOR UPDATE",
            Backend::Sqlite => "SELECT hits, window_start, locked_until FROM throttle WHERE key = $1",
        };
        let row = sqlx::query(sql).bind(key).fetch_one(&mut *self.tx).await?;
        Ok(Counter {
            hits: row.try_get("hits")?,
            window_start: row.try_get("window_start")?,
            locked_until: row.try_get("locked_until")?,
        })
    }

    pub async fn set(&mut self, key: &str, c: Counter) -> Result<()> {
        sqlx::query("UPDATE throttle SET hits = $1, window_start = $2, locked_until = $3 WHERE key = $4")
            .bind(c.hits)
            .bind(c.window_start)
            .bind(c.locked_until)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn remove(&mut self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM throttle WHERE key = $1").bind(key).execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
