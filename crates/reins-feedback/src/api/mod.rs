//! The JSON API: everything the pages do, for other tools. Described by `/api/openapi.json`.
pub mod accounts;
pub mod items;
mod openapi;
pub mod review;
pub use openapi::openapi;

use crate::app::AppState;
use crate::assign::{self, SubmitBody};
use crate::auth::{self, AuthUser, ClientAddr, SESSION_COOKIE, SESSION_TTL_MS};
use crate::db::{Item, Role, User};
use crate::error::{bad, Error, Result};
use crate::tasks::ProjectConfig;
use crate::{export, import, stats, throttle};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Checks a password and opens a session: `(user, token, csrf)`. `address` is the client's
/// (see [`auth::ClientAddr`]); the login limits key on it.
pub async fn open_session(
    state: &AppState,
    c: &Credentials,
    address: &str,
) -> Result<(crate::db::User, String, String)> {
    let attempt = throttle::reserve_login(state, &c.username, address).await?;
    let user = state.db.user_by_name(&c.username).await?;
    // Verify against a dummy hash for unknown users so timing does not reveal names.
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0ZuAfxz2YwSfbjEuB1ouo0WMMXcyu1A6jZcXrQn5eV8";
    let ok = auth::verify_password(&c.password, user.as_ref().map_or(DUMMY, |u| u.password_hash.as_str())).await?;
    match (user, ok) {
        (Some(user), true) => {
            attempt.succeeded(state).await?;
            if state.db.is_disabled(&user.id).await? {
                return Err(accounts::disabled_error(c));
            }
            let (token, csrf) = state.db.create_session(&user.id, SESSION_TTL_MS).await?;
            Ok((user, token, csrf))
        }
        _ => Err(Error::Unauthorized),
    }
}

fn session_response(state: &AppState, status: StatusCode, user: &crate::db::User, token: &str, csrf: &str) -> Response {
    let cookie = auth::set_cookie(SESSION_COOKIE, token, SESSION_TTL_MS / 1000, state.config.secure_cookies);
    (status, [(header::SET_COOKIE, cookie)], Json(json!({"user": user, "token": token, "csrf_token": csrf})))
        .into_response()
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(c): Json<Credentials>,
) -> Result<Response> {
    let (user, token, csrf) = open_session(&state, &c, &address).await?;
    Ok(session_response(&state, StatusCode::OK, &user, &token, &csrf))
}

pub async fn logout(State(state): State<AppState>, user: AuthUser, headers: HeaderMap) -> Result<Response> {
    user.check_csrf_header(&headers)?;
    state.db.delete_session(&user.token).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies))],
    )
        .into_response())
}

pub async fn me(user: AuthUser) -> Json<Value> {
    Json(json!({"user": user.user, "csrf_token": user.csrf}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    pub role: String,
    #[serde(default)]
    pub project_id: Option<String>,
}

pub async fn make_invite(state: &AppState, user: &AuthUser, role: Role, project_id: Option<&str>) -> Result<Value> {
    user.require_admin()?;
    if let Some(p) = project_id {
        state.db.project(p).await?;
    }
    let token = state.db.create_invite(role, project_id, Some(&user.user.id), SESSION_TTL_MS).await?;
    Ok(json!({"token": token, "url": format!("{}/invite/{token}", state.config.base_url.trim_end_matches('/'))}))
}

pub async fn create_invite(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(b): Json<InviteBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    let v = make_invite(&state, &user, Role::parse(&b.role)?, b.project_id.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Creates the account an invite is for, adds it to the invite's project.
pub async fn redeem_invite(state: &AppState, token: &str, c: &Credentials) -> Result<crate::db::User> {
    auth::check_username(&c.username)?;
    // Checked before hashing: a made-up token costs the server no argon2 run.
    if !state.db.invite_valid(token).await? {
        return Err(Error::NotFound("this invite is unknown, used or expired".into()));
    }
    let hash = auth::hash_password(&c.password).await?;
    let mut user = state.db.create_user(&c.username, &hash, Role::Annotator).await?;
    let Some((role, project)) = state.db.take_invite(token, &user.id).await? else {
        // Another request used the invite first: the account made for this one goes.
        state.db.delete_user(&user.id).await?;
        return Err(Error::NotFound("this invite is unknown, used or expired".into()));
    };
    if role != Role::Annotator {
        state.db.set_role(&user.id, role).await?;
        user.role = role;
    }
    if let Some(p) = project {
        state.db.add_member(&p, &user.id).await?;
    }
    Ok(user)
}

pub async fn accept_invite(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Json(c): Json<Credentials>,
) -> Result<Response> {
    let user = redeem_invite(&state, &token, &c).await?;
    let (token, csrf) = state.db.create_session(&user.id, SESSION_TTL_MS).await?;
    Ok(session_response(&state, StatusCode::CREATED, &user, &token, &csrf))
}

pub async fn list_projects(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>> {
    Ok(Json(json!({"projects": state.db.projects_for(&user.user).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    pub name: String,
    pub config: Value,
}

pub async fn create_project(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(b): Json<ProjectBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    if b.name.trim().is_empty() || b.name.len() > 200 {
        return Err(bad("project names are 1–200 bytes"));
    }
    ProjectConfig::parse(&b.config)?;
    let p = state.db.create_project(&b.name, &b.config).await?;
    Ok((StatusCode::CREATED, Json(json!(p))))
}

pub async fn get_project(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<Value>> {
    user.require_member(&state, &id).await?;
    Ok(Json(json!(state.db.project(&id).await?)))
}

/// `{"username": …}`: names the user a member or reviewer route adds to a project.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsernameBody {
    pub username: String,
}

/// For the admin routes that add a named user to a project: checks the CSRF header, the admin
/// role and that the project exists, then finds the user (404 naming them when absent).
pub(crate) async fn project_user_for_admin(
    state: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    project_id: &str,
    username: &str,
) -> Result<User> {
    user.check_csrf_header(headers)?;
    user.require_admin()?;
    state.db.project(project_id).await?;
    state.db.user_by_name(username).await?.ok_or_else(|| Error::NotFound(format!("no user `{username}`")))
}

pub async fn add_member(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<UsernameBody>,
) -> Result<StatusCode> {
    let u = project_user_for_admin(&state, &user, &headers, &id, &b.username).await?;
    state.db.add_member(&id, &u.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body: JSONL text (see `import` for the accepted line shapes).
pub async fn import_items(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Value>> {
    user.check_csrf_header(&headers)?;
    user.require_admin()?;
    let report = import::import_jsonl(&state.db, &id, &body).await?;
    Ok(Json(json!(report)))
}

/// What an annotator sees: responses in this assignment's display order.
pub fn task_view(a: &crate::db::Assignment, item: &Item) -> Value {
    let shown: Vec<&String> = a.display_order.iter().filter_map(|&i| item.responses.get(i)).collect();
    json!({"assignment_id": a.id, "item_id": item.external_id, "prompt": item.prompt, "responses": shown})
}

/// What an admin previewing a project sees: the item as stored, with no assignment.
pub fn preview_view(item: &Item) -> Value {
    json!({"assignment_id": null, "item_id": item.external_id, "prompt": item.prompt, "responses": item.responses, "preview": true})
}

/// Claims are for members who label. An admin outside the project gets a preview of the
/// next item (`"preview": true`, no assignment), as on the label page, so looking does not
/// take a slot an annotator needs.
pub async fn next(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Response> {
    user.require_member(&state, &id).await?;
    if user.is_admin() && !state.db.is_member(&id, &user.user.id).await? {
        return Ok(match assign::preview_item(&state, &id, &user).await? {
            Some(item) => Json(preview_view(&item)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        });
    }
    Ok(match assign::next_assignment(&state, &id, &user).await? {
        Some((a, item)) => {
            let mut view = task_view(&a, &item);
            if let Some(s) = state.db.item_suggestions(&item.id).await? {
                let cfg = ProjectConfig::parse(&state.db.project(&id).await?.config)?;
                view["suggestions"] = crate::suggestions::in_display_positions(&cfg, &s, &a.display_order);
                view["suggestion_source"] = json!(s.source);
            }
            Json(view).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<SubmitBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    user.require_member(&state, &id).await?;
    let (s, created) = assign::submit(&state, &id, &user, b).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"submission_id": s.id, "duplicate": !created, "answer": s.answer}))))
}

pub async fn stats(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<Value>> {
    user.require_admin()?;
    let p = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&p.config)?;
    let adj = state.db.adjudications(&id).await?;
    let s = stats::compute(
        &cfg,
        &state.db.items(&id).await?,
        &crate::review::effective_submissions(&state.db, &id).await?,
        &state.db.usernames().await?,
        &crate::review::latest_adjudications(&adj),
    );
    Ok(Json(json!(s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Fraction of items held out for validation. Default 0.
    #[serde(default)]
    pub split: Option<f64>,
    /// `train` (default), `validation` or `all`.
    #[serde(default)]
    pub part: Option<String>,
}

pub async fn export(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, format)): Path<(String, String)>,
    Query(q): Query<ExportQuery>,
) -> Result<Response> {
    user.require_admin()?;
    let e = crate::review::export(&state.db, &id, &format, q.split.unwrap_or(0.0)).await?;
    let records = match q.part.as_deref().unwrap_or("train") {
        "train" => e.train,
        "validation" => e.validation,
        "all" => e.train.into_iter().chain(e.validation).collect(),
        other => return Err(bad(format!("unknown part `{other}`: use train, validation or all"))),
    };
    Ok(([(header::CONTENT_TYPE, "application/jsonl; charset=utf-8")], export::to_jsonl(&records)).into_response())
}
