//! Request logging and error pages, as one middleware around the whole router.
//!
//! Every request leaves one JSON line: method, route *pattern* (`/invite/{token}`, never the
//! raw path, which can hold a token), status, latency and the signed-in user's id. Cookies,
//! headers, bodies and query strings are never logged. A server error adds the error id and
//! its internal message; the client only gets the id to quote (see `Error::into_response`).
//! Errors on pages (anything outside `/api`) are turned into HTML pages for the browser.
use crate::app::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where request log lines go: stderr by default, a collector in tests.
pub type LogSink = Arc<dyn Fn(&Value) + Send + Sync>;

pub fn stderr_sink() -> LogSink {
    Arc::new(|line: &Value| eprintln!("{line}"))
}

/// Who made the request, filled in by the `AuthUser` extractor once the session checks out.
#[derive(Clone, Default)]
pub struct UserSlot(Arc<Mutex<Option<String>>>);

impl UserSlot {
    pub fn set(&self, user_id: &str) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(user_id.to_string());
        }
    }
    fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

/// A server error's internals, carried from the error response to the log line only.
#[derive(Clone, Debug)]
pub struct ErrorDetail {
    pub id: String,
    pub message: String,
}

pub async fn log_and_pages(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)", |m| m.as_str()).to_string();
    let page = !(req.uri().path() == "/api" || req.uri().path().starts_with("/api/"));
    let user = UserSlot::default();
    req.extensions_mut().insert(user.clone());
    let mut res = next.run(req).await;
    let mut line = json!({
        "event": "request",
        "method": method,
        "route": route,
        "status": res.status().as_u16(),
        "latency_ms": (start.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        "user_id": user.get(),
    });
    if let Some(e) = res.extensions_mut().remove::<ErrorDetail>() {
        line["error_id"] = json!(e.id);
        line["error"] = json!(e.message);
    }
    (state.log)(&line);
    if page && (res.status().is_client_error() || res.status().is_server_error()) {
        res = error_page(&state, res).await;
    }
    res
}

/// A JSON (or empty) error response as an HTML page with the same status and headers.
async fn error_page(state: &AppState, res: Response) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    if !is_json && !bytes.is_empty() {
        // Already a page (the login form's "wrong password", for one).
        return Response::from_parts(parts, Body::from(bytes));
    }
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let status = parts.status;
    let message = match v["error"].as_str() {
        Some(m) => m.to_string(),
        None if status == StatusCode::NOT_FOUND => "There is no page at this address.".to_string(),
        None => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let ctx = minijinja::context! {
        status => status.as_u16(),
        reason => status.canonical_reason().unwrap_or(""),
        message => message,
        signed_out => status == StatusCode::UNAUTHORIZED,
    };
    let html = match state.templates.get_template("error.html").and_then(|t| t.render(ctx)) {
        Ok(html) => html,
        Err(_) => format!("<!doctype html><title>{}</title><p>{}</p>", status.as_u16(), status),
    };
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}
