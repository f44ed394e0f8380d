//! Passwords (argon2id), sessions (random tokens in the database, sent as an HttpOnly
//! SameSite=Strict cookie or as `Authorization: Bearer`), CSRF tokens per session.
//!
//! CSRF: cookie-authenticated requests that change state must carry the session's CSRF
//! token, as the `csrf` form field (pages) or the `x-csrf-token` header (API). Bearer
//! requests need none: browsers never attach them on their own.
use crate::app::AppState;
use crate::db::{Role, User};
use crate::error::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

pub const SESSION_COOKIE: &str = "reins_session";
/// Pre-login CSRF cookie for the login and invite forms (double submit).
pub const PRE_COOKIE: &str = "reins_pre";
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

pub async fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

pub async fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

pub fn check_password(password: &str) -> Result<()> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(Error::BadRequest(format!("passwords need {MIN_PASSWORD} to {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

pub fn check_username(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest("usernames are 1–64 characters of letters, digits, `.`, `_`, `-`, `@`".into()))
    }
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

pub fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// Constant-time string comparison for tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A signed-in user. Extracting it fails with 401 when there is no valid session.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub token: String,
    pub csrf: String,
    pub via_bearer: bool,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
    pub fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden("this needs the admin role".into()))
        }
    }
    /// For API writes: the `x-csrf-token` header must match unless the request used a bearer token.
    pub fn check_csrf_header(&self, headers: &HeaderMap) -> Result<()> {
        if self.via_bearer {
            return Ok(());
        }
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        self.check_csrf(sent)
    }
    pub fn check_csrf(&self, sent: &str) -> Result<()> {
        if same_token(sent, &self.csrf) {
            Ok(())
        } else {
            Err(Error::Forbidden("missing or wrong CSRF token: reload the page and try again".into()))
        }
    }
    /// Admins may see every project; others only those they are members of.
    pub async fn require_member(&self, state: &AppState, project_id: &str) -> Result<()> {
        state.db.project(project_id).await?;
        if self.is_admin() || state.db.is_member(project_id, &self.user.id).await? {
            Ok(())
        } else {
            Err(Error::Forbidden("you are not a member of this project".into()))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let (token, via_bearer) = match bearer {
            Some(t) => (t, true),
            None => (cookie(&parts.headers, SESSION_COOKIE).ok_or(Error::Unauthorized)?, false),
        };
        let (user, csrf) = state.db.session(&token).await?.ok_or(Error::Unauthorized)?;
        if let Some(slot) = parts.extensions.get::<crate::requests::UserSlot>() {
            slot.set(&user.id);
        }
        Ok(AuthUser { user, token, csrf, via_bearer })
    }
}

/// The signed-in user if any (pages redirect to /login instead of answering 401).
pub struct MaybeUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        match AuthUser::from_request_parts(parts, state).await {
            Ok(u) => Ok(MaybeUser(Some(u))),
            Err(Error::Unauthorized) => Ok(MaybeUser(None)),
            Err(e) => Err(e),
        }
    }
}
