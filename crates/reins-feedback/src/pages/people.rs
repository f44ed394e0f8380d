//! The people page (`/people`, admins): every user with their projects, disable / enable,
//! password reset links, and each project's members with remove and add. Plain forms with
//! the session's CSRF token, no scripts. Also the password pages everyone uses: `/account`
//! (change your own) and `/reset/{token}` (a reset link from an admin).
use super::{check_pre, render};
use crate::api::accounts;
use crate::app::AppState;
use crate::auth::{self, AuthUser, ClientAddr, MaybeUser, PRE_COOKIE};
use crate::db::random_token;
use crate::error::{Error, Result};
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;

/// What the page says after an action: a notice, an error, or a reset link to hand over.
#[derive(Default)]
struct Outcome {
    notice: String,
    error: String,
    reset_url: String,
    reset_for: String,
}

async fn render_people(state: &AppState, user: &AuthUser, out: Outcome, status: StatusCode) -> Result<Response> {
    let projects = state.db.projects_for(&user.user).await?;
    let people = state.db.people().await?;
    let name_of = |id: &str| projects.iter().find(|p| p.id == id).map_or(id.to_string(), |p| p.name.clone());
    let people_view: Vec<minijinja::Value> = people
        .iter()
        .map(|p| {
            let mut names: Vec<String> = p.projects.iter().map(|id| name_of(id)).collect();
            names.sort();
            context! { username => p.username, role => p.role, disabled => p.disabled, projects => names,
            me => p.username == user.user.username }
        })
        .collect();
    let mut project_view = Vec::with_capacity(projects.len());
    for p in &projects {
        let members = state.db.members(&p.id).await?;
        let addable: Vec<&str> = people
            .iter()
            .filter(|u| !members.iter().any(|m| m.username == u.username))
            .map(|u| u.username.as_str())
            .collect();
        project_view.push(context! { id => p.id, name => p.name, members => members, addable => addable });
    }
    let html = render(
        state,
        "people.html",
        context! {
            user => user.user, csrf => user.csrf, people => people_view, projects => project_view,
            notice => out.notice, error => out.error, reset_url => out.reset_url, reset_for => out.reset_for,
        },
    )?;
    Ok((status, html).into_response())
}

pub async fn page(State(state): State<AppState>, MaybeUser(user): MaybeUser) -> Result<Response> {
    let Some(user) = user else {
        return Ok(super::login_redirect("/people"));
    };
    user.require_admin()?;
    render_people(&state, &user, Outcome::default(), StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    username: String,
    #[serde(default)]
    project: Option<String>,
}

/// `POST /people/{disable|enable|reset|remove|add}`; the page comes back with what happened.
pub async fn act(
    State(state): State<AppState>,
    user: AuthUser,
    Path(action): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf)?;
    user.require_admin()?;
    let db = &state.db;
    let project = || f.project.as_deref().ok_or_else(|| Error::BadRequest("pick a project".into()));
    let project_name = |id: &str| {
        let id = id.to_string();
        async move { Ok::<_, Error>(db.project(&id).await?.name) }
    };
    let done: Result<Outcome> = async {
        let name = auth::normalize_username(&f.username);
        Ok(match action.as_str() {
            "disable" => {
                accounts::set_disabled(db, Some(&user.user), &f.username, true).await?;
                Outcome { notice: format!("Disabled {name}: their sessions ended; their labels stay."), ..Default::default() }
            }
            "enable" => {
                accounts::set_disabled(db, Some(&user.user), &f.username, false).await?;
                Outcome { notice: format!("Enabled {name}: they can log in again."), ..Default::default() }
            }
            "reset" => {
                let url = accounts::reset_link(db, Some(&user.user), &f.username, &state.config.base_url).await?;
                Outcome {
                    notice: format!("Give {name} this link; it works once, for a day."),
                    reset_url: url,
                    reset_for: name,
                    ..Default::default()
                }
            }
            "remove" => {
                let p = project()?;
                let released = accounts::remove_member(db, p, &f.username).await?;
                let pname = project_name(p).await?;
                Outcome {
                    notice: format!(
                        "Removed {name} from {pname}: {released} unfinished task(s) went back to the pool; their labels stay."
                    ),
                    ..Default::default()
                }
            }
            "add" => {
                let p = project()?;
                accounts::add_member(db, p, &f.username).await?;
                let pname = project_name(p).await?;
                Outcome { notice: format!("Added {name} to {pname}."), ..Default::default() }
            }
            other => return Err(Error::NotFound(format!("no action `{other}` on the people page"))),
        })
    }
    .await;
    match done {
        Ok(out) => render_people(&state, &user, out, StatusCode::OK).await,
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_) | Error::NotFound(_))) => {
            let status = e.status();
            render_people(&state, &user, Outcome { error: e.to_string(), ..Default::default() }, status).await
        }
        Err(e) => Err(e),
    }
}

// ---- your own password

pub async fn account_form(State(state): State<AppState>, MaybeUser(user): MaybeUser) -> Result<Response> {
    let Some(user) = user else {
        return Ok(super::login_redirect("/account"));
    };
    let html =
        render(&state, "account.html", context! { user => user.user, csrf => user.csrf, error => "", notice => "" })?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    old_password: String,
    new_password: String,
}

pub async fn account_submit(
    State(state): State<AppState>,
    user: AuthUser,
    ClientAddr(address): ClientAddr,
    Form(f): Form<PasswordForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf)?;
    let (status, error, notice) =
        match accounts::change_password(&state, &user, &address, &f.old_password, &f.new_password).await {
            Ok(()) => {
                (StatusCode::OK, String::new(), "Password changed. Your other sessions were signed out.".to_string())
            }
            Err(e @ (Error::BadRequest(_) | Error::Forbidden(_))) => (e.status(), e.to_string(), String::new()),
            Err(e) => return Err(e),
        };
    let html = render(
        &state,
        "account.html",
        context! { user => user.user, csrf => user.csrf, error => error, notice => notice },
    )?;
    Ok((status, html).into_response())
}

// ---- reset links

pub async fn reset_form(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response> {
    let Some(user_id) = state.db.reset_user(&token).await? else {
        return Err(Error::NotFound("this reset link is unknown, used or expired: ask an admin for a new one".into()));
    };
    let username = state.db.user_by_id(&user_id).await?.map(|u| u.username).unwrap_or_default();
    let pre = random_token();
    let html = render(
        &state,
        "reset.html",
        context! { csrf => pre, token => token, username => username, error => "", done => false },
    )?;
    Ok(([(header::SET_COOKIE, auth::set_cookie(PRE_COOKIE, &pre, 3600, state.config.secure_cookies))], html)
        .into_response())
}

#[derive(Deserialize)]
pub struct ResetForm {
    csrf: String,
    password: String,
}

pub async fn reset_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<ResetForm>,
) -> Result<Response> {
    check_pre(&headers, &f.csrf)?;
    match accounts::redeem_reset(&state.db, &token, &f.password).await {
        Ok(user) => Ok(render(
            &state,
            "reset.html",
            context! { csrf => "", token => "", username => user.username, error => "", done => true },
        )?
        .into_response()),
        Err(e @ Error::BadRequest(_)) => {
            let html = render(
                &state,
                "reset.html",
                context! { csrf => f.csrf, token => token, username => "", error => e.to_string(), done => false },
            )?;
            Ok((StatusCode::BAD_REQUEST, html).into_response())
        }
        Err(e) => Err(e),
    }
}
