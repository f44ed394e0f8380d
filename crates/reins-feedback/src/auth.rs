//! Passwords (argon2id, a bounded number at once), sessions (random tokens, stored in the
//! database as their SHA-256, sent as an HttpOnly SameSite=Strict cookie or as
//! `Authorization: Bearer`), CSRF tokens per session, and the client address the login
//! limits key on.
//!
//! CSRF: cookie-authenticated requests that change state must carry the session's CSRF
//! token, as the `csrf` form field (pages) or the `x-csrf-token` header (API). Bearer
//! requests need none: browsers never attach them on their own.
use crate::app::AppState;
use crate::db::{Role, User};
use crate::error::{Error, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const SESSION_COOKIE: &str = "reins_session";
/// Pre-login CSRF cookie for the login and invite forms (double submit).
pub const PRE_COOKIE: &str = "reins_pre";
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

pub async fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let password = password.to_string();
    with_hash_slot(move || {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let salt = SaltString::encode_b64(&bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
    })
    .await?
}

/// Whether `password` matches `hash`; `Err(Busy)` when the hashing queue is full.
pub async fn verify_password(password: &str, hash: &str) -> Result<bool> {
    if password.len() > MAX_PASSWORD {
        return Ok(false);
    }
    let (password, hash) = (password.to_string(), hash.to_string());
    with_hash_slot(move || {
        HASH_MEMORY.with_borrow_mut(|memory| verify_in(password.as_bytes(), &hash, memory).unwrap_or(false))
    })
    .await
}

/// Largest argon2 memory a stored hash may ask for (64 MiB; ours use 19 MiB).
const MAX_HASH_BLOCKS: u32 = 64 * 1024;

thread_local! {
    /// The argon2 memory of this hashing thread, allocated once and reused: allocating and
    /// freeing 19 MiB per check let the allocator keep a copy per arena.
    static HASH_MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `Argon2::verify_password`, but in the caller's memory. None when `phc` is not a
/// well-formed argon2 hash.
fn verify_in(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> Option<bool> {
    let hash = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).ok()?;
    let expected = hash.hash?;
    let mut salt = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt).ok()?;
    if params.m_cost() > MAX_HASH_BLOCKS {
        return None;
    }
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .ok()?;
    Some(
        out.len() == expected.as_bytes().len()
            && out.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0,
    )
}

/// How long a password check may wait (queue and hash) before the client gets 503.
pub const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Password checks allowed to wait per hashing thread; more are refused at once.
pub const HASH_QUEUE_PER_CORE: usize = 32;

/// argon2id takes 19 MiB and a core for each hash. Unbounded, a burst of logins for unknown
/// users (which must still pay for a dummy hash) grew the heap by gigabytes that the
/// allocator kept. So hashes run on one long-lived thread per core, process-wide: at most
/// that many at once, and each thread's allocator arena reuses its own 19 MiB instead of
/// every short-lived blocking thread keeping one. Waiters are bounded in number and time.
struct HashWorkers {
    queue: std::sync::mpsc::SyncSender<HashJob>,
}

type HashJob = Box<dyn FnOnce() + Send>;

fn hash_workers() -> &'static HashWorkers {
    static WORKERS: OnceLock<HashWorkers> = OnceLock::new();
    WORKERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (queue, jobs) = std::sync::mpsc::sync_channel::<HashJob>(cores * HASH_QUEUE_PER_CORE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..cores {
            let jobs = jobs.clone();
            let worker = move || loop {
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            };
            if let Err(e) = std::thread::Builder::new().name(format!("reins-hash-{i}")).spawn(worker) {
                tracing::error!("cannot start password hashing thread {i}: {e}");
            }
        }
        HashWorkers { queue }
    })
}

async fn with_hash_slot<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let busy = || Error::Busy {
        message: "the server is busy checking passwords: retry in a few seconds".into(),
        retry_after_s: 5,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        // The client gave up (timeout or hang-up) while queued: skip the work.
        if tx.is_closed() {
            return;
        }
        if let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            let _ = tx.send(out);
        }
    });
    hash_workers().queue.try_send(job).map_err(|e| match e {
        std::sync::mpsc::TrySendError::Full(_) => busy(),
        std::sync::mpsc::TrySendError::Disconnected(_) => Error::Internal("no password hashing thread".into()),
    })?;
    match tokio::time::timeout(HASH_QUEUE_TIMEOUT, rx).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(_)) => Err(Error::Internal("password hashing failed".into())),
        Err(_) => Err(busy()),
    }
}

pub fn check_password(password: &str) -> Result<()> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(Error::BadRequest(format!("passwords need {MIN_PASSWORD} to {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

/// Usernames are compared without regard to case: `Alice` and `alice` are one account,
/// stored as `alice`.
pub fn normalize_username(name: &str) -> String {
    name.to_ascii_lowercase()
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

/// The client's address as the login limits key it: the peer's IP (an IPv6 client by its
/// /64, which one host usually owns whole), or the last entry of the header named by
/// `--client-ip-header` when a reverse proxy sets it. "unknown" in in-process tests.
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let from_header = state.config.client_ip_header.as_deref().and_then(|name| {
            let v = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).next_back()?;
            v.rsplit(',').next().map(str::trim).and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        });
        let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientAddr(match from_header.or(peer) {
            Some(std::net::IpAddr::V6(ip)) if ip.to_ipv4_mapped().is_none() => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(std::net::IpAddr::V6(ip)) => ip.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string()),
            Some(ip) => ip.to_string(),
            None => "unknown".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verification_in_reused_memory_matches_argon2() {
        let hash = hash_password("correct horse").await.unwrap();
        assert!(verify_password("correct horse", &hash).await.unwrap());
        assert!(!verify_password("correct horsf", &hash).await.unwrap());
        assert!(!verify_password("correct horse", "not a hash").await.unwrap());
        let mut memory = Vec::new();
        let other = Argon2::default()
            .hash_password(b"pw-12345", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
            .unwrap()
            .to_string();
        assert_eq!(verify_in(b"pw-12345", &other, &mut memory), Some(true));
        assert_eq!(verify_in(b"pw-12346", &other, &mut memory), Some(false));
    }
}
