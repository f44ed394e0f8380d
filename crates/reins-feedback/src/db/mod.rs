//! Storage through `sqlx::Any`: one code path for SQLite (default, one file, WAL) and
//! PostgreSQL. Queries use `$1..$n` placeholders in order of first use, which both accept.
mod accounts;
mod item_search;
mod oidc;
mod people;
mod progress;
mod records;
mod review;
mod suggestions;
mod throttle;
pub(crate) use accounts::token_hash;
pub use item_search::{ItemFilter, ItemRow, ItemStatus};
pub use oidc::OidcLogin;
pub use people::{Member, Person};
pub use records::*;
pub use review::{Adjudication, Flag, Revision};
pub use suggestions::Suggestions;
pub use throttle::{window_of, Counter, Locked};

use crate::error::Result;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Migrations in order; each runs once, recorded in `reins_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_security.sql")),
    (3, include_str!("../../migrations/0003_data.sql")),
    (4, include_str!("../../migrations/0004_accounts.sql")),
    (5, include_str!("../../migrations/0005_review.sql")),
    (6, include_str!("../../migrations/0006_items.sql")),
    (7, include_str!("../../migrations/0007_one_verdict.sql")),
];

/// PostgreSQL advisory lock key held while migrating ("reins" in ASCII); the
/// transaction-level kind, so a node that dies mid-migration releases it.
const MIGRATION_LOCK: i64 = 0x72_65_69_6e_73;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// `feedback.db`, `sqlite://feedback.db` or `postgres://user@host/db`.
pub fn normalize_url(url: &str) -> (String, Backend) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        (url.to_string(), Backend::Postgres)
    } else {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        (format!("sqlite://{path}?mode=rwc"), Backend::Sqlite)
    }
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let (url, backend) = normalize_url(url);
        if backend == Backend::Sqlite {
            create_owner_only(&url)?;
        }
        let pool = match backend {
            // One writer connection: SQLite serialises writers anyway, and one connection
            // avoids SQLITE_BUSY on read-to-write upgrades inside transactions.
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode=WAL",
                                "PRAGMA synchronous=FULL",
                                "PRAGMA foreign_keys=ON",
                                "PRAGMA busy_timeout=5000",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(16).connect(&url).await?,
        };
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    /// Runs the migrations not yet recorded, each in its own transaction. On PostgreSQL every
    /// transaction first takes [`MIGRATION_LOCK`], so web nodes starting together run each
    /// migration once: the others wait, then find it recorded. SQLite serves one node only.
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.migration_tx().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS reins_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.migration_tx().await?;
            let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM reins_migrations WHERE version = $1")
                .bind(*version)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if done > 0 {
                tx.commit().await?;
                continue;
            }
            if *version == 2 {
                accounts::refuse_case_duplicates(&mut tx).await?;
            }
            for stmt in sql.split(';').map(str::trim).filter(|s| !strip_comments(s).is_empty()) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            if *version == 4 {
                accounts::hash_plain_invites(&mut tx).await?;
            }
            sqlx::query("INSERT INTO reins_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A transaction holding [`MIGRATION_LOCK`] until it ends (PostgreSQL).
    async fn migration_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        }
        Ok(tx)
    }
}

/// Creates a missing SQLite file readable by its owner only: it holds password hashes and
/// sessions. SQLite gives its `-wal` and `-shm` files the same mode. An existing file that
/// others can read (made before, or by another tool) is narrowed to owner-only, with a warning.
fn create_owner_only(url: &str) -> Result<()> {
    let path = url.trim_start_matches("sqlite://");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    if std::path::Path::new(path).exists() {
        #[cfg(unix)]
        narrow_to_owner(path);
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(crate::error::Error::BadRequest(format!("cannot create the database file {path}: {e}"))),
    }
}

#[cfg(unix)]
fn narrow_to_owner(path: &str) {
    use std::os::unix::fs::PermissionsExt;
    for f in [path.to_string(), format!("{path}-wal"), format!("{path}-shm")] {
        let Ok(meta) = std::fs::metadata(&f) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => {
                tracing::warn!(file = %f, was = %format!("{mode:o}"), "others could read the database file: made it owner-only")
            }
            Err(e) => {
                tracing::warn!(file = %f, error = %e, "others can read the database file and its mode could not be changed: run chmod 600 on it")
            }
        }
    }
}

fn strip_comments(s: &str) -> String {
    s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// 128 random bits as hex: ids, session tokens, CSRF tokens, invite tokens.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn opt_str(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}
