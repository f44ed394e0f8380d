//! One error type for the whole server; every variant maps to an HTTP status and a JSON body.
use axum::http::StatusCode;
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
            Error::RateLimited(_) => Some(60),
            Error::Throttled { retry_after_s, .. } | Error::Busy { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, Error::Busy { .. }) {
            tracing::error!("{self}");
        }
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16() });
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s() {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, s.max(1).into());
        }
        res
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::BadRequest(format!("invalid JSON: {e}"))
    }
}
