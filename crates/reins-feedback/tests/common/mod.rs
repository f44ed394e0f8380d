//! Test helpers: a fresh database (SQLite in a temp dir, or a new PostgreSQL database when
//! `REINS_TEST_POSTGRES_URL` is set), an in-process client, and a raw HTTP/1.1 client for
//! tests over real sockets.
#![allow(dead_code)]
pub mod browser;
pub mod child;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use reins_feedback::{app, AppState, Db, Role, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = dir.path().join("feedback.db").to_string_lossy().into_owned();
    TestDb { url, _dir: Some(dir) }
}

/// A new empty database on the test server, or None (with the skip message) when unset.
pub async fn postgres_db() -> Option<TestDb> {
    let Ok(base) = std::env::var("REINS_TEST_POSTGRES_URL") else {
        println!("skipped: REINS_TEST_POSTGRES_URL not set");
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("reins_test_{}", reins_feedback::db::random_token());
    let mut conn =
        <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await.expect("connect to REINS_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("postgres URL with a database name");
    Some(TestDb { url: format!("{prefix}/{name}"), _dir: None })
}

pub const ADMIN_PASSWORD: &str = "admin-password";

pub async fn state(url: &str, config: ServerConfig) -> AppState {
    let db = Db::connect(url).await.expect("open database");
    reins_feedback::create_user(&db, "admin", ADMIN_PASSWORD, Role::Admin).await.expect("admin");
    AppState::new(db, config)
}

#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub csrf: String,
}

pub struct Client {
    pub router: Router,
}

pub enum Auth<'a> {
    None,
    /// Cookie with the right CSRF header.
    Cookie(&'a Session),
    /// Cookie without a CSRF header.
    CookieNoCsrf(&'a Session),
    Bearer(&'a Session),
}

pub struct Res {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub text: String,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

impl Client {
    pub fn new(state: AppState) -> Client {
        Client { router: app(state) }
    }

    pub async fn raw(&self, method: &str, path: &str, auth: Auth<'_>, content_type: &str, body: String) -> Res {
        let mut b = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Cookie(s) => {
                b = b.header("cookie", format!("reins_session={}", s.token)).header("x-csrf-token", &s.csrf)
            }
            Auth::CookieNoCsrf(s) => b = b.header("cookie", format!("reins_session={}", s.token)),
            Auth::Bearer(s) => b = b.header("authorization", format!("Bearer {}", s.token)),
        }
        if !body.is_empty() {
            b = b.header("content-type", content_type);
        }
        let res = self.router.clone().oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Res { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub async fn call(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Res {
        self.raw(method, path, auth, "application/json", body.map(|b| b.to_string()).unwrap_or_default()).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Session {
        let r = self
            .call("POST", "/api/login", Auth::None, Some(json!({"username": username, "password": password})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let v = r.json();
        Session { token: v["token"].as_str().unwrap().into(), csrf: v["csrf_token"].as_str().unwrap().into() }
    }

    /// Invite (as admin) and accept: a new annotator in `project`.
    pub async fn annotator(&self, admin: &Session, project: &str, username: &str) -> Session {
        let r = self
            .call(
                "POST",
                "/api/invites",
                Auth::Cookie(admin),
                Some(json!({"role": "annotator", "project_id": project})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let token = r.json()["token"].as_str().unwrap().to_string();
        let r = self
            .call(
                "POST",
                &format!("/api/invites/{token}/accept"),
                Auth::None,
                Some(json!({"username": username, "password": "annotator-pw"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let v = r.json();
        Session { token: v["token"].as_str().unwrap().into(), csrf: v["csrf_token"].as_str().unwrap().into() }
    }

    pub async fn project(&self, admin: &Session, name: &str, config: Value) -> String {
        let r = self
            .call("POST", "/api/projects", Auth::Cookie(admin), Some(json!({"name": name, "config": config})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    }

    pub async fn import(&self, admin: &Session, project: &str, jsonl: &str) -> Value {
        let r = self
            .raw(
                "POST",
                &format!("/api/projects/{project}/items"),
                Auth::Cookie(admin),
                "application/jsonl",
                jsonl.to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json()
    }
}

pub fn pairwise_config(overlap: u32) -> Value {
    json!({"guidelines": "Pick the **more helpful** answer.", "overlap": overlap, "gold_rate": 0.0,
           "questions": [{"name": "preference", "kind": "pairwise", "strength": true}]})
}

pub fn items_jsonl(n: usize) -> String {
    (0..n).map(|i| json!({"id": format!("item-{i}"), "prompt": format!("prompt {i}"), "responses": [format!("good {i}"), format!("bad {i}")]}).to_string() + "\n").collect()
}

/// Minimal HTTP/1.1 over a real socket (`Connection: close`), for load and browser tests.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    let (status, _, body) = http_on(s, addr, method, path, headers, body).await?;
    Ok((status, body))
}

/// Like [`http`], from the loopback source address `from` (any of 127.0.0.0/8), so one test
/// can play many client addresses. Returns `(status, lower-cased head, body)`.
pub async fn http_from(
    from: std::net::Ipv4Addr,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    let s = socket.connect(addr.parse().map_err(std::io::Error::other)?).await?;
    http_on(s, addr, method, path, headers, body).await
}

async fn http_on(
    mut s: tokio::net::TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    // Read the head, then exactly Content-Length bytes (some servers keep the socket open).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(format!("connection closed: {}", String::from_utf8_lossy(&buf))));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("no status"))?;
    let length =
        head.lines().find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()));
    let mut body = buf[head_end..].to_vec();
    match length {
        Some(len) => {
            while body.len() < len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            s.read_to_end(&mut body).await?;
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(&text) } else { text };
    Ok((status, head, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Serves `state` on a free loopback port; returns the address.
pub async fn spawn_server(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { reins_feedback::app::serve(state, listener, std::future::pending()).await });
    addr
}
