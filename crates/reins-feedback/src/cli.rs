//! Blocking entry points for the `reins` binary (`reins serve`, `reins feedback ...`): each
//! builds its own tokio runtime, so the binary needs no async dependencies.
use crate::app::{AppState, ServerConfig};
use crate::db::{Db, Role};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::BadRequest(format!("cannot read {}: {e}", path.display())))
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub db: String,
    pub addr: String,
    pub config: ServerConfig,
    /// Password for a first admin named `admin_user`, created when the database has no admin.
    pub admin_password: Option<String>,
    pub admin_user: String,
}

/// How long requests in flight may take to finish after Ctrl-C or SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens (and migrates) the database, bootstraps the first admin, serves until Ctrl-C or
/// SIGTERM, lets requests in flight finish (up to [`SHUTDOWN_GRACE`]), and closes the database.
///
/// The one bootstrap path: a database without an admin needs `admin_password`
/// (`REINS_ADMIN_PASSWORD`) on its first start; without it `serve` stops and says so. No
/// secret (password, invite link, database password) is ever printed.
pub fn serve(opts: ServeOptions) -> Result<()> {
    runtime()?.block_on(async move {
        for w in startup_warnings(&opts.config) {
            eprintln!("warning: {w}");
        }
        let db = Db::connect(&opts.db).await?;
        if let Err(e) = bootstrap_admin(&db, &opts).await {
            db.pool.close().await;
            return Err(e);
        }
        // Installed before the first request, so a SIGTERM is never the default (instant) death.
        let signal = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(&opts.addr)
            .await
            .map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", opts.addr)))?;
        println!("reins feedback serving on http://{} (database: {})", opts.addr, redact_url(&opts.db));
        if let Some(o) = &opts.config.oidc {
            // The client secret is never printed.
            println!(
                "OpenID Connect sign-in with {} (client {}; redirect URI {}/oidc/callback)",
                o.issuer,
                o.client_id,
                opts.config.base_url.trim_end_matches('/')
            );
        }
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            signal.await;
            println!("shutting down: finishing requests in flight");
            let _ = stopping.send(());
        };
        let serving = crate::app::serve(AppState::new(db.clone(), opts.config), listener, shutdown);
        // A client that never finishes its request must not keep the server up forever.
        let grace = async {
            if stopped.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = serving => served,
            _ = grace => {
                eprintln!("warning: requests still running {} s after the shutdown signal; stopping anyway", SHUTDOWN_GRACE.as_secs());
                Ok(())
            }
        };
        db.pool.close().await;
        println!("database closed");
        served.map_err(|e| Error::Internal(format!("server error: {e}")))
    })
}

async fn bootstrap_admin(db: &Db, opts: &ServeOptions) -> Result<()> {
    if db.count_admins().await? > 0 {
        return Ok(());
    }
    let Some(pw) = &opts.admin_password else {
        return Err(Error::BadRequest(format!(
            "the database {} has no admin yet: start once with REINS_ADMIN_PASSWORD set to create the admin `{}` \
             (--admin-user picks another name)",
            redact_url(&opts.db),
            opts.admin_user
        )));
    };
    match crate::create_user(db, &opts.admin_user, pw, Role::Admin).await {
        Ok(_) => {
            println!("created admin `{}`", crate::auth::normalize_username(&opts.admin_user));
            Ok(())
        }
        // Another web node starting on the same database created it first.
        Err(Error::Conflict(_)) if db.count_admins().await? > 0 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Settings that work but are probably a mistake.
pub fn startup_warnings(config: &ServerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if config.base_url.to_ascii_lowercase().starts_with("https://") && !config.secure_cookies {
        out.push(format!(
            "--base-url {} is https but --secure-cookies is off: browsers would also send the session \
             cookie over plain http; add --secure-cookies",
            config.base_url
        ));
    }
    out
}

/// A database URL fit to print: the password (in the authority or a `password=` query
/// parameter) becomes `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM, as sent by `kill`, systemd and container stops.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Internal(format!("cannot listen for SIGTERM: {e}")))?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

pub fn create_user(db: &str, username: &str, password: &str, role: Role) -> Result<()> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        crate::create_user(&db, username, password, role).await.map(|_| ())
    })
}

/// Creates a project from a JSON config file; returns its id.
pub fn create_project(db: &str, name: &str, config: &Path) -> Result<String> {
    let cfg: serde_json::Value =
        serde_json::from_str(&read(config)?).map_err(|e| Error::BadRequest(format!("{}: {e}", config.display())))?;
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        Ok(crate::create_project(&db, name, &cfg).await?.id)
    })
}

pub fn import(db: &str, project: &str, file: &Path) -> Result<crate::import::ImportReport> {
    let text = read(file)?;
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        let p = crate::find_project(&db, project).await?;
        crate::import::import_jsonl(&db, &p.id, &text).await
    })
}

/// An invite link (role, optional project by id or name).
pub fn invite(db: &str, role: Role, project: Option<&str>, base_url: &str) -> Result<String> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        let pid = match project {
            Some(p) => Some(crate::find_project(&db, p).await?.id),
            None => None,
        };
        let token = db.create_invite(role, pid.as_deref(), None, crate::auth::SESSION_TTL_MS).await?;
        Ok(format!("{}/invite/{token}", base_url.trim_end_matches('/')))
    })
}

// ---- user and member management (the rules live in api::accounts)

/// Disables (`disabled`) or enables a user. The last enabled admin cannot be disabled.
pub fn set_disabled(db: &str, username: &str, disabled: bool) -> Result<()> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        crate::api::accounts::set_disabled(&db, None, username, disabled).await
    })
}

/// A one-time password reset link for `username` (valid for a day).
pub fn reset_password(db: &str, username: &str, base_url: &str) -> Result<String> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        crate::api::accounts::reset_link(&db, None, username, base_url).await
    })
}

/// Adds an existing user to a project (by id or name).
pub fn add_member(db: &str, project: &str, username: &str) -> Result<()> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        let p = crate::find_project(&db, project).await?;
        crate::api::accounts::add_member(&db, &p.id, username).await
    })
}

/// Removes a member from a project; returns how many unfinished claims were released.
pub fn remove_member(db: &str, project: &str, username: &str) -> Result<u64> {
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        let p = crate::find_project(&db, project).await?;
        crate::api::accounts::remove_member(&db, &p.id, username).await
    })
}

/// Writes `<out>/<format>.train.jsonl` and, when `split > 0`, `<out>/<format>.validation.jsonl`.
pub fn export(db: &str, project: &str, formats: &[String], split: f64, out: &Path) -> Result<Vec<(PathBuf, usize)>> {
    std::fs::create_dir_all(out).map_err(|e| Error::BadRequest(format!("cannot create {}: {e}", out.display())))?;
    runtime()?.block_on(async {
        let db = Db::connect(db).await?;
        let p = crate::find_project(&db, project).await?;
        let mut written = Vec::new();
        for f in formats {
            let e = crate::export_project(&db, &p.id, f, split).await?;
            let mut parts = vec![("train", e.train)];
            if split > 0.0 {
                parts.push(("validation", e.validation));
            }
            for (part, records) in parts {
                let path = out.join(format!("{f}.{part}.jsonl"));
                std::fs::write(&path, crate::export::to_jsonl(&records))
                    .map_err(|e| Error::BadRequest(format!("cannot write {}: {e}", path.display())))?;
                written.push((path, records.len()));
            }
        }
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://reins:hunter2@db.internal:5432/fb"),
            "postgres://reins:***@db.internal:5432/fb"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@h/db?password=x&sslmode=require"),
            "postgresql://u:***@h/db?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://reins@db/fb"), "postgres://reins@db/fb");
        assert_eq!(redact_url("feedback.db"), "feedback.db");
    }

    #[test]
    fn https_without_secure_cookies_is_warned_about() {
        let c = ServerConfig { base_url: "HTTPS://label.example.org".into(), ..Default::default() };
        assert_eq!(startup_warnings(&c).len(), 1);
        assert!(startup_warnings(&ServerConfig { secure_cookies: true, ..c }).is_empty());
        assert!(startup_warnings(&ServerConfig::default()).is_empty());
    }
}
