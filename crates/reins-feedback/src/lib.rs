//! reins-feedback: the annotation server behind `reins serve`. People compare, rank, rate
//! and critique model outputs; every submission is stored raw and append-only in SQLite or
//! PostgreSQL; consensus, agreement and training exports are derived from it.
//!
//! - [`app::app`] is the whole router (pages + JSON API), testable in process.
//! - [`tasks`] holds the data-driven task types; [`assign`] overlap-k assignment and submit.
//! - [`agreement`] / [`consensus`] are pure functions; [`export`] writes TRL JSONL shapes.
pub mod agreement;
pub mod api;
pub mod app;
pub mod assign;
pub mod auth;
pub mod chart;
pub mod cli;
pub mod consensus;
pub mod db;
pub mod error;
pub mod export;
pub mod import;
pub mod oidc;
pub mod pages;
pub mod requests;
pub mod review;
pub mod stats;
pub mod suggestions;
pub mod tasks;
pub mod throttle;
pub mod timeline;

pub use app::{app, AppState, ServerConfig};
pub use db::{Db, Role};
pub use error::{Error, Result};

/// Creates a user with a password directly in the database (CLI bootstrap, tests).
pub async fn create_user(db: &Db, username: &str, password: &str, role: Role) -> Result<db::User> {
    auth::check_username(username)?;
    let hash = auth::hash_password(password).await?;
    db.create_user(username, &hash, role).await
}

/// Creates a project after validating its config.
pub async fn create_project(db: &Db, name: &str, config: &serde_json::Value) -> Result<db::Project> {
    tasks::ProjectConfig::parse(config)?;
    db.create_project(name, config).await
}

/// Finds a project by id or by name. A name that several projects share (possible only in
/// a database made before names were unique) is refused with the ids to use instead.
pub async fn find_project(db: &Db, id_or_name: &str) -> Result<db::Project> {
    match db.project(id_or_name).await {
        Err(Error::NotFound(_)) => {}
        found => return found,
    }
    let mut named = db.projects_named(id_or_name).await?;
    match named.len() {
        0 => Err(Error::NotFound(format!("no project with id or name `{id_or_name}`"))),
        1 => Ok(named.remove(0)),
        n => {
            let ids: Vec<&str> = named.iter().map(|p| p.id.as_str()).collect();
            Err(Error::Conflict(format!(
                "{n} projects are named `{id_or_name}` (made before names were unique); \
                 pass one of their ids instead, oldest first: {}",
                ids.join(", ")
            )))
        }
    }
}

/// Export records for a project, split into train and validation by item. Labels are read
/// through the review rules (edits and corrections applied, rejected labels left out).
pub async fn export_project(db: &Db, project_id: &str, format: &str, split: f64) -> Result<export::Exported> {
    review::export(db, project_id, format, split).await
}
