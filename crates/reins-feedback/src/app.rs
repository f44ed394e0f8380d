//! The router: JSON API under `/api`, server-rendered pages elsewhere, security headers
//! on every response, one log line per request (see `requests`).
use crate::db::Db;
use crate::error::Error;
use crate::requests::{self, LogSink};
use crate::{api, pages};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
// user and member management
use crate::{api::accounts, pages::people};
use axum::routing::delete;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Mark cookies `Secure` (serve behind HTTPS). Default: false (loopback use).
    pub secure_cookies: bool,
    /// Submissions per user per minute; 0 = unlimited. Default: 120.
    pub rate_limit_per_minute: u32,
    /// Largest request body in bytes (imports included). Default: 32 MiB.
    pub max_body_bytes: usize,
    /// Public base URL used in invite links. Default: `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Failed logins per account per minute, all addresses together, before addresses that
    /// already failed for it get 429 (addresses with no failures still get their try, so
    /// strangers cannot lock the owner out). 0 = unlimited. Default: 10.
    pub login_failures_per_user: u32,
    /// Failed logins per client address per minute, all accounts together. 0 = unlimited.
    /// Default: 30.
    pub login_failures_per_address: u32,
    /// Header holding the client's address when behind a reverse proxy (e.g.
    /// `X-Forwarded-For`, last entry used). Default: none, the peer address is used.
    pub client_ip_header: Option<String>,
    /// OpenID Connect sign-in (`reins serve --oidc-issuer`). Default: none (off).
    pub oidc: Option<crate::oidc::OidcConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            secure_cookies: false,
            rate_limit_per_minute: 120,
            max_body_bytes: 32 << 20,
            base_url: "http://127.0.0.1:8080".into(),
            login_failures_per_user: 10,
            login_failures_per_address: 30,
            client_ip_header: None,
            oidc: None,
        }
    }
}

/// Per-process state holds nothing that several web nodes on one database must agree
/// on: rate limits, lock-outs and claims live in the database.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<ServerConfig>,
    pub templates: Arc<minijinja::Environment<'static>>,
    /// Request log lines (JSON); stderr unless replaced.
    pub log: LogSink,
}

impl AppState {
    pub fn new(db: Db, config: ServerConfig) -> AppState {
        AppState { db, config: Arc::new(config), templates: Arc::new(pages::templates()), log: requests::stderr_sink() }
    }
}

/// Body limit of the routes open to anyone (login and invite forms): credentials are small,
/// and nobody unauthenticated gets to make the server buffer megabytes.
pub const OPEN_BODY_LIMIT: usize = 16 << 10;

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    res
}

/// The whole application, ready to serve or to test with `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let api = Router::new()
        .route("/openapi.json", get(api::openapi))
        .route("/login", post(api::login).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route("/invites", post(api::create_invite))
        .route("/invites/{token}/accept", post(api::accept_invite).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)))
        .route("/projects", get(api::list_projects).post(api::create_project))
        .route("/projects/{id}", get(api::get_project))
        .route("/projects/{id}/members", post(api::add_member))
        .route("/projects/{id}/items", get(api::items::list).post(api::import_items))
        .route("/projects/{id}/next", get(api::next))
        .route("/projects/{id}/submissions", post(api::submit))
        .route("/projects/{id}/stats", get(api::stats))
        .route("/projects/{id}/export/{format}", get(api::export))
        // edits and reviews (api/review.rs)
        .route("/projects/{id}/mine", get(api::review::get_mine))
        .route("/projects/{id}/flags", post(api::review::post_flag))
        .route("/projects/{id}/submissions/{sid}/{action}", post(api::review::post_revision))
        .route("/projects/{id}/review", get(api::review::get_queue))
        .route("/projects/{id}/items/{item}/adjudicate", post(api::review::post_adjudication))
        .route("/projects/{id}/reviewers", post(api::review::add_reviewer))
        // user and member management (api/accounts.rs)
        .route("/users", get(accounts::list_users))
        .route("/users/{username}/disable", post(accounts::disable_user))
        .route("/users/{username}/enable", post(accounts::enable_user))
        .route("/users/{username}/password-reset", post(accounts::create_reset))
        .route("/password-resets/{token}", post(accounts::use_reset).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)))
        .route("/me/password", post(accounts::my_password))
        .route("/projects/{id}/members", get(accounts::list_members))
        .route("/projects/{id}/members/{username}", delete(accounts::delete_member));
    Router::new()
        .nest("/api", api)
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login_submit).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)))
        .route("/logout", post(pages::logout))
        .route(
            "/invite/{token}",
            get(pages::invite_form).post(pages::invite_submit).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)),
        )
        .route("/p/{id}", get(pages::label))
        .route("/p/{id}/dashboard", get(pages::dashboard))
        .route("/p/{id}/invite", post(pages::invite_create))
        .route("/static/app.js", get(pages::app_js))
        // edits and reviews (api/review.rs)
        .route("/p/{id}/mine", get(pages::review::mine_page))
        .route("/p/{id}/mine/{sid}", get(pages::review::edit_page))
        .route("/p/{id}/review", get(pages::review::queue_page))
        .route("/p/{id}/review/{sid}", get(pages::review::correct_page))
        .route("/static/review.js", get(pages::review::review_js))
        .route("/static/style.css", get(pages::style_css))
        // item search and previews, model suggestions, span highlighting
        .route("/p/{id}/items", get(pages::items::list))
        .route("/p/{id}/items/{item}", get(pages::items::preview))
        .route("/static/spans.js", get(pages::spans_js))
        .route("/static/suggestions.js", get(pages::suggestions_js))
        // user and member management (pages/people.rs)
        .route("/people", get(people::page))
        .route("/people/{action}", post(people::act))
        .route(
            "/reset/{token}",
            get(people::reset_form).post(people::reset_submit).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)),
        )
        .route("/account", get(people::account_form).post(people::account_submit))
        // OpenID Connect sign-in (oidc/), answering 404 unless configured
        .route("/oidc/login", get(crate::oidc::login))
        .route("/oidc/callback", get(crate::oidc::callback))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), requests::log_and_pages))
        .with_state(state)
}

async fn not_found() -> Error {
    Error::NotFound("nothing here: check the address".into())
}

/// Serves until the future `shutdown` resolves, then lets requests in flight finish.
/// Peer addresses reach the handlers (the login limits key on them).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
