//! Server-rendered pages (minijinja, auto-escaped). Pages post forms with the session's
//! CSRF token; the label page submits through the JSON API with the `x-csrf-token` header.
pub(crate) mod fields;
pub mod item_review;
pub mod items;
pub mod people;
pub mod review;
pub use fields::Field;

use crate::api::{self, Credentials};
use crate::app::AppState;
use crate::assign;
use crate::auth::{self, AuthUser, ClientAddr, MaybeUser, PRE_COOKIE, SESSION_COOKIE, SESSION_TTL_MS};
use crate::db::{random_token, Role};
use crate::error::{Error, Result};
use crate::stats;
use crate::tasks::ProjectConfig;
use crate::{chart, timeline};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Names end in .html, so minijinja's default auto-escaping applies to every page.
    for (name, src) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("invite.html", include_str!("../../templates/invite.html")),
        ("home.html", include_str!("../../templates/home.html")),
        ("label.html", include_str!("../../templates/label.html")),
        ("dashboard.html", include_str!("../../templates/dashboard.html")),
        ("error.html", include_str!("../../templates/error.html")),
        ("items.html", include_str!("../../templates/items.html")),
        ("item_preview.html", include_str!("../../templates/item_preview.html")),
        ("review.html", include_str!("../../templates/review.html")),
        ("people.html", include_str!("../../templates/people.html")),
        ("account.html", include_str!("../../templates/account.html")),
        ("reset.html", include_str!("../../templates/reset.html")),
        ("signed_in.html", include_str!("../../templates/signed_in.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            panic!("built-in template {name} does not parse: {e}");
        }
    }
    env
}

fn render(state: &AppState, name: &str, ctx: minijinja::Value) -> Result<Html<String>> {
    let t = state.templates.get_template(name).map_err(|e| Error::Internal(e.to_string()))?;
    t.render(ctx).map(Html).map_err(|e| Error::Internal(format!("template {name}: {e}")))
}

/// Markdown to HTML with raw HTML shown as text and `javascript:` links disarmed.
pub fn markdown(md: &str) -> String {
    use pulldown_cmark::{CowStr, Event, Parser, Tag, TagEnd};
    let events = Parser::new(md).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let lower = dest_url.trim().to_ascii_lowercase();
            let safe =
                if lower.starts_with("javascript:") || lower.starts_with("data:") || lower.starts_with("vbscript:") {
                    CowStr::from("#")
                } else {
                    dest_url
                };
            Event::Start(Tag::Link { link_type, dest_url: safe, title, id })
        }
        // Images are dropped (no remote fetches from the annotation page); alt text stays.
        Event::Start(Tag::Image { .. }) => Event::Start(Tag::Emphasis),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Emphasis),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

/// To the login form, which returns to `next` (the page that was asked for) afterwards.
fn login_redirect(next: &str) -> Response {
    if next == "/" {
        return Redirect::to("/login").into_response();
    }
    Redirect::to(&format!("/login?next={}", percent_encode(next))).into_response()
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `next` if it is a path on this site, else `/`: a login link must not send people to
/// another site (`//host`, `/\host` and `scheme:` are all refused).
pub(crate) fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 2000 =>
        {
            n
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

pub async fn login_form(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Result<Response> {
    let pre = random_token();
    let next = local_path(q.next.as_deref());
    let oidc =
        state.config.oidc.as_ref().map(|o| (o.name.clone(), format!("/oidc/login?next={}", percent_encode(next))));
    let html = render(&state, "login.html", context! { csrf => pre, error => "", next => next, oidc => oidc })?;
    Ok(([(header::SET_COOKIE, auth::set_cookie(PRE_COOKIE, &pre, 3600, state.config.secure_cookies))], html)
        .into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    /// Where to go after logging in (a local path; anything else goes to `/`).
    #[serde(default)]
    next: Option<String>,
}

fn check_pre(headers: &HeaderMap, sent: &str) -> Result<()> {
    match auth::cookie(headers, PRE_COOKIE) {
        Some(c) if auth::same_token(&c, sent) => Ok(()),
        _ => Err(Error::Forbidden("the form expired (CSRF check failed): reload the page and try again".into())),
    }
}

pub async fn login_submit(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response> {
    check_pre(&headers, &f.csrf)?;
    let next = local_path(f.next.as_deref()).to_string();
    match api::open_session(&state, &Credentials { username: f.username, password: f.password }, &address).await {
        Ok((_, token, _)) => Ok((
            [(
                header::SET_COOKIE,
                auth::set_cookie(SESSION_COOKIE, &token, SESSION_TTL_MS / 1000, state.config.secure_cookies),
            )],
            Redirect::to(&next),
        )
            .into_response()),
        Err(Error::Unauthorized) => {
            let error = "Wrong username or password.";
            let html = render(&state, "login.html", context! { csrf => f.csrf, error => error, next => next })?;
            Ok((StatusCode::UNAUTHORIZED, html).into_response())
        }
        // A disabled account: the form says so (and to ask an admin).
        Err(e @ Error::Forbidden(_)) => {
            let html = render(&state, "login.html", context! { csrf => f.csrf, error => e.to_string(), next => next })?;
            Ok((StatusCode::FORBIDDEN, html).into_response())
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(State(state): State<AppState>, user: AuthUser, Form(f): Form<CsrfForm>) -> Result<Response> {
    user.check_csrf(&f.csrf)?;
    state.db.delete_session(&user.token).await?;
    Ok((
        [(header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies))],
        Redirect::to("/login"),
    )
        .into_response())
}

pub async fn invite_form(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response> {
    if !state.db.invite_valid(&token).await? {
        return Err(Error::NotFound("this invite is unknown, used or expired".into()));
    }
    let pre = random_token();
    let oidc =
        state.config.oidc.as_ref().map(|o| (o.name.clone(), format!("/oidc/login?invite={}", percent_encode(&token))));
    let html = render(&state, "invite.html", context! { csrf => pre, token => token, error => "", oidc => oidc })?;
    Ok(([(header::SET_COOKIE, auth::set_cookie(PRE_COOKIE, &pre, 3600, state.config.secure_cookies))], html)
        .into_response())
}

pub async fn invite_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(f): Form<LoginForm>,
) -> Result<Response> {
    check_pre(&headers, &f.csrf)?;
    let c = Credentials { username: f.username, password: f.password };
    match api::redeem_invite(&state, &token, &c).await {
        Ok(user) => {
            let (session, _) = state.db.create_session(&user.id, SESSION_TTL_MS).await?;
            Ok((
                [(
                    header::SET_COOKIE,
                    auth::set_cookie(SESSION_COOKIE, &session, SESSION_TTL_MS / 1000, state.config.secure_cookies),
                )],
                Redirect::to("/"),
            )
                .into_response())
        }
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => {
            let html =
                render(&state, "invite.html", context! { csrf => f.csrf, token => token, error => e.to_string() })?;
            Ok((StatusCode::BAD_REQUEST, html).into_response())
        }
        Err(e) => Err(e),
    }
}

pub async fn home(State(state): State<AppState>, MaybeUser(user): MaybeUser) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect("/"));
    };
    let projects = state.db.projects_for(&user.user).await?;
    let admin = user.is_admin();
    let reviewing = state.db.projects_reviewed_by(&user.user.id).await?;
    Ok(render(
        &state,
        "home.html",
        context! { user => user.user, csrf => user.csrf, projects => projects, admin => admin, reviewing => reviewing },
    )?
    .into_response())
}

pub async fn label(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}")));
    };
    user.require_member(&state, &id).await?;
    let project = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    // An admin outside the project previews it: opening the page must not take a slot
    // that an annotator needs (with overlap 1 that stranded the item).
    let preview = user.is_admin() && !state.db.is_member(&id, &user.user.id).await?;
    let next = if preview {
        assign::preview_item(&state, &id, &user).await?.map(|item| {
            let order: Vec<usize> = (0..item.responses.len()).collect();
            (api::preview_view(&item), order, item)
        })
    } else {
        assign::next_assignment(&state, &id, &user)
            .await?
            .map(|(a, item)| (api::task_view(&a, &item), a.display_order, item))
    };
    let mut source = None;
    let (task, fields, responses) = match &next {
        Some((view, order, item)) => {
            let shown: Vec<(String, &String)> = order
                .iter()
                .enumerate()
                .filter_map(|(p, &i)| Some((fields::letter(p), item.responses.get(i)?)))
                .collect();
            let mut fields = fields::fields(&cfg, shown.len());
            if let Some(s) = state.db.item_suggestions(&item.id).await? {
                crate::suggestions::annotate(&mut fields, &cfg, &s, order);
                source = Some(s.source.unwrap_or_else(|| "a model".into()));
            }
            (Some(view), fields, shown)
        }
        None => (None, vec![], vec![]),
    };
    // "Item 3 of 40": items this annotator has finished, plus the one on screen.
    let (done, total) = state.db.progress(&id, &user.user.id).await?;
    let progress = context! { done => done, total => total, current => (done + 1).min(total) };
    let html = render(
        &state,
        "label.html",
        context! {
            user => user.user, csrf => user.csrf, project => project, task => task,
            responses => responses, fields => fields, preview => preview, progress => progress,
            suggestion_source => source,
            guidelines => minijinja::Value::from_safe_string(markdown(&cfg.guidelines)),
        },
    )?;
    Ok(html.into_response())
}

/// The dashboard's numbers and its charts (inline SVG, one series per annotator).
async fn dashboard_data(
    state: &AppState,
    cfg: &ProjectConfig,
    id: &str,
) -> Result<(stats::Stats, Vec<minijinja::Value>)> {
    let subs = crate::review::effective_submissions(&state.db, id).await?;
    let names = state.db.usernames().await?;
    let adj = state.db.adjudications(id).await?;
    let s = stats::compute(cfg, &state.db.items(id).await?, &subs, &names, &crate::review::latest_adjudications(&adj));
    let charts = timeline::charts(cfg, &subs, &names)
        .iter()
        .map(|c| minijinja::Value::from_safe_string(chart::line_chart(c)))
        .collect();
    Ok((s, charts))
}

pub async fn dashboard(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/dashboard")));
    };
    user.require_admin()?;
    let project = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let (s, charts) = dashboard_data(&state, &cfg, &id).await?;
    Ok(render(&state, "dashboard.html", context! { user => user.user, csrf => user.csrf, project => project, stats => s, charts => charts, invite => minijinja::Value::UNDEFINED, formats => crate::export::FORMATS })?.into_response())
}

#[derive(Deserialize)]
pub struct InviteCreateForm {
    csrf: String,
    role: String,
}

pub async fn invite_create(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Form(f): Form<InviteCreateForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf)?;
    let invite = api::make_invite(&state, &user, Role::parse(&f.role)?, Some(&id)).await?;
    let project = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let (s, charts) = dashboard_data(&state, &cfg, &id).await?;
    Ok(render(&state, "dashboard.html", context! { user => user.user, csrf => user.csrf, project => project, stats => s, charts => charts, invite => invite, formats => crate::export::FORMATS })?.into_response())
}

/// After an OpenID sign-in: the session cookie is SameSite=Strict, and a browser that counts
/// the issuer's redirect chain as cross-site (RFC 6265bis) would send the next page's request
/// without it. A page of our own moves on instead (a meta refresh, no script, with a link as
/// fallback), so the next request starts on this site in every browser.
pub(crate) fn signed_in_page(state: &AppState, next: &str) -> Result<Html<String>> {
    render(state, "signed_in.html", context! { next => local_path(Some(next)) })
}

pub async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../templates/app.js")).into_response()
}

pub async fn spans_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../templates/spans.js"))
        .into_response()
}

pub async fn suggestions_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../templates/suggestions.js"))
        .into_response()
}

pub async fn style_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../templates/style.css")).into_response()
}
