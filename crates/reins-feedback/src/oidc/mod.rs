//! OpenID Connect sign-in, off unless `reins serve --oidc-issuer` is given: the
//! authorization code flow with PKCE (S256).
//!
//! `/oidc/login` reads the issuer's discovery document, keeps a random `state`, `nonce` and
//! PKCE verifier in the database (so any web node can finish the sign-in; used once, 10
//! minutes), binds `state` to the browser with a cookie, and redirects to the issuer.
//! `/oidc/callback` takes the stored sign-in back, exchanges the code (with the verifier and
//! the client secret), checks the ID token ([`jwt`]), and signs in the local account linked to
//! the identity's (issuer, subject). A first-time identity gets an account only with an
//! invite (the invite page's button) or when its verified email is in an allowed domain;
//! otherwise the page says to ask an admin.
//! Disabled accounts are refused here as at the password form.
pub mod jwt;

use crate::app::AppState;
use crate::auth::{self, SESSION_COOKIE, SESSION_TTL_MS};
use crate::db::{random_token, OidcLogin, Role, User};
use crate::error::{Error, Result};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a sign-in may take at the issuer.
pub const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
/// Holds `state` in the browser that began the sign-in (SameSite=Lax: the issuer's redirect
/// back is a cross-site top-level navigation, which Strict cookies would miss).
pub const STATE_COOKIE: &str = "reins_oidc";
/// The environment variable that holds the client secret (never a flag: flags show in `ps`).
pub const SECRET_ENV: &str = "REINS_OIDC_CLIENT_SECRET";

#[derive(Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as its ID tokens' `iss` (discovery is read from
    /// `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// From `REINS_OIDC_CLIENT_SECRET`; never printed (`Debug` shows `***`).
    pub client_secret: String,
    /// The login page's button says "Sign in with {name}".
    pub name: String,
    /// A first-time identity whose verified email is in one of these domains gets an
    /// annotator account; everyone else must ask an admin. Empty: nobody new gets in.
    pub allowed_domains: Vec<String>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("name", &self.name)
            .field("allowed_domains", &self.allowed_domains)
            .finish()
    }
}

impl OidcConfig {
    /// From `reins serve`'s options: None when no issuer is given (OIDC off). An issuer needs
    /// a client id and the secret in [`SECRET_ENV`].
    pub fn from_options(
        issuer: Option<String>,
        client_id: Option<String>,
        secret: Option<String>,
        name: Option<String>,
        allowed_domains: Vec<String>,
    ) -> Result<Option<OidcConfig>> {
        let Some(issuer) = issuer else {
            if client_id.is_some() || !allowed_domains.is_empty() {
                return Err(Error::BadRequest("the --oidc-* options need --oidc-issuer".into()));
            }
            return Ok(None);
        };
        let client_id = client_id.ok_or_else(|| Error::BadRequest("--oidc-issuer needs --oidc-client-id".into()))?;
        let client_secret = secret.filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::BadRequest(format!("--oidc-issuer needs the client secret in the environment variable {SECRET_ENV}"))
        })?;
        let name = name.unwrap_or_else(|| {
            issuer.split("://").nth(1).and_then(|h| h.split(['/', ':']).next()).unwrap_or("SSO").to_string()
        });
        let allowed_domains =
            allowed_domains.iter().map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase()).collect();
        Ok(Some(OidcConfig { issuer, client_id, client_secret, name, allowed_domains }))
    }
}

fn config(state: &AppState) -> Result<&OidcConfig> {
    state.config.oidc.as_ref().ok_or_else(|| Error::NotFound("nothing here: check the address".into()))
}

fn client() -> Result<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the HTTPS client: {e}")))?;
    Ok(CLIENT.get_or_init(|| c))
}

/// A failure talking to the issuer: the operator's problem (logged with an error id).
fn upstream(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("OpenID issuer: {what}: {e}"))
}

async fn read_json(res: reqwest::Response, what: &str) -> Result<Value> {
    let status = res.status();
    let body = res.bytes().await.map_err(|e| upstream(what, e))?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| upstream(what, format!("HTTP {status}, not JSON: {e}")))?;
    Ok(v)
}

async fn get_json(url: &str, what: &str) -> Result<Value> {
    let res = client()?.get(url).send().await.map_err(|e| upstream(what, e))?;
    if !res.status().is_success() {
        return Err(upstream(what, format!("{url} answered HTTP {}", res.status())));
    }
    read_json(res, what).await
}

struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

async fn discover(cfg: &OidcConfig) -> Result<Discovery> {
    let url = format!("{}/.well-known/openid-configuration", cfg.issuer.trim_end_matches('/'));
    let d = get_json(&url, "discovery").await?;
    if d["issuer"] != cfg.issuer.as_str() {
        return Err(upstream("discovery", format!("names the issuer {}, not {}", d["issuer"], cfg.issuer)));
    }
    let field = |k: &str| d[k].as_str().map(str::to_string).ok_or_else(|| upstream("discovery", format!("no `{k}`")));
    Ok(Discovery {
        authorization_endpoint: field("authorization_endpoint")?,
        token_endpoint: field("token_endpoint")?,
        jwks_uri: field("jwks_uri")?,
    })
}

fn redirect_uri(state: &AppState) -> String {
    format!("{}/oidc/callback", state.config.base_url.trim_end_matches('/'))
}

fn encode(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", crate::pages::percent_encode(v))).collect::<Vec<_>>().join("&")
}

#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    /// An invite token: a first-time identity redeems it (the invite page's button).
    #[serde(default)]
    invite: Option<String>,
}

/// `GET /oidc/login?next=/p/…`: off to the issuer.
pub async fn login(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Result<Response> {
    let cfg = config(&state)?;
    if let Some(invite) = &q.invite {
        if !state.db.invite_valid(invite).await? {
            return Err(Error::NotFound("this invite is unknown, used or expired: ask an admin for a new one".into()));
        }
    }
    let d = discover(cfg).await?;
    let st = random_token();
    let login = OidcLogin {
        nonce: random_token(),
        // 64 characters of [0-9a-f]: within RFC 7636's 43..=128 unreserved characters.
        verifier: random_token() + &random_token(),
        next_path: crate::pages::local_path(q.next.as_deref()).to_string(),
        invite_hash: q.invite.as_deref().map(crate::db::token_hash),
    };
    let challenge = jwt::b64url(&Sha256::digest(login.verifier.as_bytes()));
    state.db.create_oidc_login(&st, &login, LOGIN_TTL_MS).await?;
    let query = encode(&[
        ("response_type", "code"),
        ("client_id", &cfg.client_id),
        ("redirect_uri", &redirect_uri(&state)),
        ("scope", "openid email profile"),
        ("state", &st),
        ("nonce", &login.nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let sep = if d.authorization_endpoint.contains('?') { '&' } else { '?' };
    let cookie = state_cookie(&st, LOGIN_TTL_MS / 1000, state.config.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&format!("{}{sep}{query}", d.authorization_endpoint)))
        .into_response())
}

fn state_cookie(value: &str, max_age_s: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{STATE_COOKIE}={value}; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}")
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /oidc/callback?code=…&state=…`: the issuer sends the browser back here.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response> {
    let cfg = config(&state)?;
    let again = "start again from the login page";
    if let Some(e) = q.error {
        return Err(Error::Forbidden(format!("{} did not sign you in ({e}): {again}", cfg.name)));
    }
    let st = q
        .state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadRequest(format!("no `state` in the answer: {again}")))?;
    match auth::cookie(&headers, STATE_COOKIE) {
        Some(c) if auth::same_token(&c, &st) => {}
        _ => return Err(Error::BadRequest(format!("this sign-in was not started in this browser: {again}"))),
    }
    let login = state
        .db
        .take_oidc_login(&st)
        .await?
        .ok_or_else(|| Error::BadRequest(format!("this sign-in is unknown, used or expired: {again}")))?;
    let code = q.code.ok_or_else(|| Error::BadRequest(format!("no `code` in the answer: {again}")))?;
    let d = discover(cfg).await?;
    let id_token = exchange(&state, cfg, &d, &code, &login.verifier).await?;
    let jwks = get_json(&d.jwks_uri, "JWKS").await?;
    let want = jwt::Expected {
        issuer: &cfg.issuer,
        audience: &cfg.client_id,
        nonce: &login.nonce,
        now_s: crate::db::now_ms() / 1000,
    };
    let claims = jwt::verify_id_token(&id_token, &jwks, &want)
        .map_err(|why| Error::Forbidden(format!("sign-in refused: {why}")))?;
    let user = local_user(&state, cfg, &claims, login.invite_hash.as_deref()).await?;
    if state.db.is_disabled(&user.id).await? {
        return Err(Error::Forbidden(format!(
            "the account `{}` is disabled: ask an admin to enable it again",
            user.username
        )));
    }
    let (token, _) = state.db.create_session(&user.id, SESSION_TTL_MS).await?;
    let secure = state.config.secure_cookies;
    let html = crate::pages::signed_in_page(&state, &login.next_path)?;
    Ok((
        AppendHeaders([
            (header::SET_COOKIE, auth::set_cookie(SESSION_COOKIE, &token, SESSION_TTL_MS / 1000, secure)),
            (header::SET_COOKIE, state_cookie("", 0, secure)),
        ]),
        html,
    )
        .into_response())
}

/// The code for an ID token (client_secret_basic, with the PKCE verifier).
async fn exchange(state: &AppState, cfg: &OidcConfig, d: &Discovery, code: &str, verifier: &str) -> Result<String> {
    let body = encode(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &redirect_uri(state)),
        ("code_verifier", verifier),
        ("client_id", &cfg.client_id),
    ]);
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!(
            "{}:{}",
            crate::pages::percent_encode(&cfg.client_id),
            crate::pages::percent_encode(&cfg.client_secret)
        ),
    );
    let res = client()?
        .post(&d.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .body(body)
        .send()
        .await
        .map_err(|e| upstream("token endpoint", e))?;
    let ok = res.status().is_success();
    let v = read_json(res, "token endpoint").await?;
    if !ok {
        return Err(Error::Forbidden(format!(
            "{} refused the sign-in code ({}): start again from the login page",
            cfg.name, v["error"]
        )));
    }
    v["id_token"].as_str().map(str::to_string).ok_or_else(|| upstream("token endpoint", "no id_token in the answer"))
}

/// The account linked to the identity, or a new one when the sign-in redeems an invite or
/// its verified email's domain is allowed.
async fn local_user(state: &AppState, cfg: &OidcConfig, claims: &Value, invite_hash: Option<&str>) -> Result<User> {
    let (iss, sub) = (claims["iss"].as_str().unwrap_or_default(), claims["sub"].as_str().unwrap_or_default());
    if let Some(id) = state.db.oidc_user(iss, sub).await? {
        return state.db.user_by_id(&id).await?.ok_or_else(|| Error::Internal("linked account is gone".into()));
    }
    let email = claims["email"].as_str().filter(|_| claims["email_verified"] == true).map(str::to_ascii_lowercase);
    if let Some(hash) = invite_hash {
        return invited_user(state, claims, email.as_deref(), hash).await;
    }
    let domain = email.as_deref().and_then(|e| e.rsplit_once('@')).map(|(_, d)| d.to_string());
    let allowed = domain.as_ref().is_some_and(|d| cfg.allowed_domains.iter().any(|a| a == d));
    let Some(email) = email.filter(|_| allowed) else {
        return Err(Error::Forbidden(format!(
            "your {} account has no account here yet: ask an admin for an invite, or to allow your email domain",
            cfg.name
        )));
    };
    auth::check_username(&email)
        .map_err(|_| Error::Forbidden(format!("`{email}` cannot be a username here: ask an admin for an invite")))?;
    // No password: such an account signs in through the issuer (or a reset link from an admin).
    let user = state.db.create_user(&email, "!oidc", Role::Annotator).await.map_err(|e| match e {
        Error::Conflict(_) => Error::Conflict(format!(
            "an account named `{email}` already exists here: sign in with its password, or ask an admin"
        )),
        e => e,
    })?;
    state.db.link_oidc(iss, sub, &user.id, Some(&email)).await?;
    Ok(user)
}

/// A first-time identity with an invite: an account named by its verified email (or its
/// `preferred_username`), with the invite's role and project, the invite used up.
async fn invited_user(state: &AppState, claims: &Value, email: Option<&str>, invite_hash: &str) -> Result<User> {
    let candidates = [email, claims["preferred_username"].as_str()];
    let name = candidates.into_iter().flatten().map(str::to_ascii_lowercase).find(|n| auth::check_username(n).is_ok());
    let name = name.ok_or_else(|| {
        Error::Forbidden("the issuer gave no email or username usable here: accept the invite with a password".into())
    })?;
    let mut user = state.db.create_user(&name, "!oidc", Role::Annotator).await.map_err(|e| match e {
        Error::Conflict(_) => Error::Conflict(format!(
            "an account named `{name}` already exists here: accept the invite with another name and a password"
        )),
        e => e,
    })?;
    let Some((role, project)) = state.db.take_invite_hashed(invite_hash, &user.id).await? else {
        // Used by someone else meanwhile: the account made for this sign-in goes.
        state.db.delete_user(&user.id).await?;
        return Err(Error::NotFound("this invite is unknown, used or expired: ask an admin for a new one".into()));
    };
    if role != Role::Annotator {
        state.db.set_role(&user.id, role).await?;
        user.role = role;
    }
    if let Some(p) = project {
        state.db.add_member(&p, &user.id).await?;
    }
    let (iss, sub) = (claims["iss"].as_str().unwrap_or_default(), claims["sub"].as_str().unwrap_or_default());
    state.db.link_oidc(iss, sub, &user.id, email).await?;
    Ok(user)
}
