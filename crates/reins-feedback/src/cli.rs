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

/// Opens (and migrates) the database, bootstraps the first admin, serves until Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    runtime()?.block_on(async move {
        let db = Db::connect(&opts.db).await?;
        if db.count_admins().await? == 0 {
            match &opts.admin_password {
                Some(pw) => {
                    crate::create_user(&db, &opts.admin_user, pw, Role::Admin).await?;
                    println!("created admin `{}`", opts.admin_user);
                }
                None => {
                    let token = db.create_invite(Role::Admin, None, None, crate::auth::SESSION_TTL_MS).await?;
                    println!(
                        "no admin yet: open {}/invite/{token} to create one",
                        opts.config.base_url.trim_end_matches('/')
                    );
                }
            }
        }
        let listener = tokio::net::TcpListener::bind(&opts.addr)
            .await
            .map_err(|e| Error::BadRequest(format!("cannot listen on {}: {e}", opts.addr)))?;
        println!("reins feedback serving on http://{} (database: {})", opts.addr, opts.db);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::app::serve(AppState::new(db, opts.config), listener, shutdown)
            .await
            .map_err(|e| Error::Internal(format!("server error: {e}")))
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
