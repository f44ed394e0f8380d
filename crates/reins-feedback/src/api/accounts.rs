//! User and member management: list people, disable and enable accounts, remove members,
//! password reset links and password changes. The rules live in the plain functions (the
//! CLI calls them too); the handlers add authentication and CSRF.
//!
//! Nobody can lock everyone out: an admin cannot disable themself, and the last enabled
//! admin cannot be disabled. Admins reach every project without being members, so removing
//! a member never locks anyone out of a project.
use super::Credentials;
use crate::app::AppState;
use crate::auth::{self, AuthUser, ClientAddr};
use crate::db::{Db, User};
use crate::error::{Error, Result};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// How long a password reset link works: a day.
pub const RESET_TTL_MS: i64 = 24 * 3600 * 1000;

async fn user_named(db: &Db, username: &str) -> Result<User> {
    db.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user `{username}`")))
}

/// Disables or enables `username`. `actor` is the admin asking (None from the CLI).
pub async fn set_disabled(db: &Db, actor: Option<&User>, username: &str, disabled: bool) -> Result<()> {
    let target = user_named(db, username).await?;
    if disabled {
        if actor.is_some_and(|a| a.id == target.id) {
            return Err(Error::Conflict("you cannot disable your own account: ask another admin".into()));
        }
        let enabled_admin = target.role == crate::db::Role::Admin && !db.is_disabled(&target.id).await?;
        if enabled_admin && db.count_enabled_admins().await? <= 1 {
            return Err(Error::Conflict(format!(
                "`{}` is the last enabled admin: enable or create another admin first, or nobody could manage the server",
                target.username
            )));
        }
    }
    db.set_disabled(&target.id, disabled).await
}

/// Removes `username` from the project; returns how many unfinished claims went back to
/// the pool. Their submitted labels stay.
pub async fn remove_member(db: &Db, project_id: &str, username: &str) -> Result<u64> {
    db.project(project_id).await?;
    let u = user_named(db, username).await?;
    match db.remove_member(project_id, &u.id).await? {
        (true, released) => Ok(released),
        (false, _) => Err(Error::NotFound(format!("`{}` is not a member of this project", u.username))),
    }
}

/// Adds an existing user to a project (a member already is one: no error).
pub async fn add_member(db: &Db, project_id: &str, username: &str) -> Result<()> {
    db.project(project_id).await?;
    let u = user_named(db, username).await?;
    db.add_member(project_id, &u.id).await
}

/// A one-time link that lets `username` choose a new password (valid for a day; a newer
/// link replaces it).
pub async fn reset_link(db: &Db, by: Option<&User>, username: &str, base_url: &str) -> Result<String> {
    let u = user_named(db, username).await?;
    let token = db.create_reset(&u.id, by.map(|b| b.id.as_str()), RESET_TTL_MS).await?;
    Ok(format!("{}/reset/{token}", base_url.trim_end_matches('/')))
}

/// Sets a new password through a reset link; every session of the user ends. Returns the user.
pub async fn redeem_reset(db: &Db, token: &str, password: &str) -> Result<User> {
    let gone = || Error::NotFound("this reset link is unknown, used or expired: ask an admin for a new one".into());
    // Checked before hashing: a made-up token costs the server no argon2 run.
    if db.reset_user(token).await?.is_none() {
        return Err(gone());
    }
    let hash = auth::hash_password(password).await?;
    let user_id = db.take_reset(token).await?.ok_or_else(gone)?;
    db.set_password(&user_id, &hash, None).await?;
    db.user_by_id(&user_id).await?.ok_or_else(gone)
}

/// Changes the signed-in user's own password (the old one is required); every other
/// session of theirs ends, this one stays.
pub async fn change_password(state: &AppState, user: &AuthUser, address: &str, old: &str, new: &str) -> Result<()> {
    auth::check_password(new)?;
    // The login limits apply: a stolen session must not become a password oracle.
    let attempt = crate::throttle::reserve_login(state, &user.user.username, address).await?;
    if !auth::verify_password(old, &user.user.password_hash).await? {
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    attempt.succeeded(state).await?;
    let hash = auth::hash_password(new).await?;
    state.db.set_password(&user.user.id, &hash, Some(&user.token)).await
}

/// The OpenAPI entries of these routes (merged into `/api/openapi.json`).
pub(super) fn document(paths: &mut Value) {
    use super::openapi::{js, op};
    let password = |fields: &[&str]| {
        let props: serde_json::Map<String, Value> =
            fields.iter().map(|f| (f.to_string(), json!({"type": "string"}))).collect();
        Some(js(json!({"type": "object", "required": fields, "properties": props})))
    };
    let extra = json!({
        "/api/users": {"get": op("Every user: {users: [{username, role, disabled, projects: [id]}]}", "admin", None, ("200", "users"))},
        "/api/users/{username}/disable": {"post": op("Disable a user: their sessions and tokens end at once, login is refused, labels stay (409 for yourself or the last enabled admin)", "admin", None, ("204", "disabled"))},
        "/api/users/{username}/enable": {"post": op("Enable a disabled user again", "admin", None, ("204", "enabled"))},
        "/api/users/{username}/password-reset": {"post": op("A one-time link (valid a day) with which the user sets a new password: {url, expires_in_s}", "admin", None, ("201", "reset link"))},
        "/api/password-resets/{token}": {"post": op("Set a new password with a reset link; every session of that user ends", "reset token", password(&["password"]), ("204", "password set"))},
        "/api/me/password": {"post": op("Change your own password (the current one is required); your other sessions end", "signed in", password(&["old_password", "new_password"]), ("204", "changed"))},
        "/api/projects/{id}/members": {"get": op("The project's members: {members: [{username, role, disabled}]}", "admin", None, ("200", "members"))},
        "/api/projects/{id}/members/{username}": {"delete": op("Remove a member: their unfinished claims go back to the pool, their labels stay: {released_claims}", "admin", None, ("200", "removed"))},
    });
    for (path, ops) in extra.as_object().into_iter().flatten() {
        for (method, o) in ops.as_object().into_iter().flatten() {
            paths[path.as_str()][method.as_str()] = o.clone();
        }
    }
}

// ---- handlers

pub async fn list_users(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>> {
    user.require_admin()?;
    Ok(Json(json!({"users": state.db.people().await?})))
}

pub async fn disable_user(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<StatusCode> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    set_disabled(&state.db, Some(&user.user), &username, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enable_user(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<StatusCode> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    set_disabled(&state.db, Some(&user.user), &username, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create_reset(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    let url = reset_link(&state.db, Some(&user.user), &username, &state.config.base_url).await?;
    Ok((StatusCode::CREATED, Json(json!({"url": url, "expires_in_s": RESET_TTL_MS / 1000}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    pub password: String,
}

pub async fn use_reset(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(b): Json<ResetBody>,
) -> Result<StatusCode> {
    redeem_reset(&state.db, &token, &b.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub old_password: String,
    pub new_password: String,
}

pub async fn my_password(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Json(b): Json<PasswordBody>,
) -> Result<StatusCode> {
    user.check_csrf_header(&headers)?;
    change_password(&state, &user, &address, &b.old_password, &b.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_members(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    user.require_admin()?;
    state.db.project(&id).await?;
    Ok(Json(json!({"members": state.db.members(&id).await?})))
}

pub async fn delete_member(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path((id, username)): Path<(String, String)>,
) -> Result<Json<Value>> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    let released = remove_member(&state.db, &id, &username).await?;
    Ok(Json(json!({"released_claims": released})))
}

/// Why a correct password still opens no session.
pub fn disabled_error(c: &Credentials) -> Error {
    Error::Forbidden(format!(
        "the account `{}` is disabled: ask an admin to enable it again",
        auth::normalize_username(&c.username)
    ))
}
