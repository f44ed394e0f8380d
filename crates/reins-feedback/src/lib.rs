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
pub mod pages;
pub mod stats;
pub mod tasks;
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

/// Finds a project by id or by name.
pub async fn find_project(db: &Db, id_or_name: &str) -> Result<db::Project> {
    if let Ok(p) = db.project(id_or_name).await {
        return Ok(p);
    }
    let admin =
        db::User { id: String::new(), username: String::new(), role: Role::Admin, password_hash: String::new() };
    db.projects_for(&admin)
        .await?
        .into_iter()
        .find(|p| p.name == id_or_name)
        .ok_or_else(|| Error::NotFound(format!("no project with id or name `{id_or_name}`")))
}

/// Export records for a project, split into train and validation by item.
pub async fn export_project(db: &Db, project_id: &str, format: &str, split: f64) -> Result<export::Exported> {
    let p = db.project(project_id).await?;
    let cfg = tasks::ProjectConfig::parse(&p.config)?;
    export::export(
        format,
        &cfg,
        &db.items(project_id).await?,
        &db.submissions(project_id).await?,
        &db.usernames().await?,
        split,
    )
}
