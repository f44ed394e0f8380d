//! One error type for the whole server; every variant maps to an HTTP status and a JSON body.
use crate::requests::ErrorDetail;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("not signed in: log in at /login or send `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many attempts: at most {0} per minute; wait a minute and retry")]
    RateLimited(u32),
    /// 429 with `Retry-After`: this client must wait before trying again.
    #[error("{message}")]
    Throttled { message: String, retry_after_s: u64 },
    /// 503 with `Retry-After`: the server is at capacity (password hashing), not the client's fault.
    #[error("{message}")]
    Busy { message: String, retry_after_s: u64 },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn bad(msg: impl Into<String>) -> Error {
    Error::BadRequest(msg.into())
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited(_) | Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Db(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, for 429 and 503 answers.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            // Limits count in fixed one-minute windows: the next one starts this many seconds on.
            Error::RateLimited(_) => Some((60 - (crate::db::now_ms() / 1000).rem_euclid(60)) as u64),
            Error::Throttled { retry_after_s, .. } | Error::Busy { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        }
    }
}

/// Client errors say what to do; server errors say only which id to quote. The internal
/// message travels to the request log (`requests`) with that id, never to the client.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, Error::Busy { .. }) {
            let id = crate::db::random_token()[..12].to_string();
            tracing::error!(error_id = %id, "{self}");
            let body = serde_json::json!({
                "error": format!("internal error {id}: the server logged the details; quote this id when you report it"),
                "error_id": id,
                "status": status.as_u16(),
            });
            let mut res = (status, axum::Json(body)).into_response();
            res.extensions_mut().insert(ErrorDetail { id, message: self.to_string() });
            return res;
        }
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s() {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
        }
        res
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::BadRequest(format!("invalid JSON: {e}"))
    }
}
