//! A real browser for the UI tests: headless Chromium driven through chromedriver's WebDriver
//! HTTP API, with helpers for what a person does (log in, type, press keys) and sees
//! (screenshots to `docs/img/`, overflow at a viewport). `Browser::start` returns None, and
//! the test says "skipped", when Chromium or chromedriver is missing.
use super::*;
use reins_feedback::{Db, Role, ServerConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    pub addr: String,
    pub session: String,
}

impl Driver {
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" { String::new() } else { body.to_string() };
        let (status, text) = http(&self.addr, method, &format!("/session/{}{path}", self.session), &[], &body)
            .await
            .expect("chromedriver");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }
    pub async fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css})).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/value"), json!({"text": text})).await;
    }
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/click"), json!({})).await;
    }
    pub async fn js(&self, script: &str) -> Value {
        self.js_with(script, json!([])).await
    }
    pub async fn js_with(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }
    /// Key presses through the WebDriver actions API (real keydown/keyup events).
    pub async fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.cmd("POST", "/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }
    pub async fn wait_for(&self, script: &str, what: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.js(script).await;
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Ends the WebDriver session (closing Chromium) even when an assertion panics.
pub struct SessionGuard {
    addr: String,
    session: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(&self.addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session, self.addr
            );
            if s.write_all(req.as_bytes()).is_ok() {
                let _ = s.read(&mut [0u8; 1024]);
            }
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver plus a headless Chromium session; both end when this is dropped.
pub struct Browser {
    pub d: Driver,
    _guard: SessionGuard,
    _driver_proc: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// None (with the skip message) when Chromium or chromedriver is missing.
    pub async fn start() -> Option<Browser> {
        let chromium = std::env::var("REINS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let chromedriver = std::env::var("REINS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        if !std::path::Path::new(&chromium).exists() || !std::path::Path::new(&chromedriver).exists() {
            println!("skipped: REINS_CHROMIUM not set or chromium/chromedriver absent");
            return None;
        }
        let port = free_port();
        let driver_proc = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let daddr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while !matches!(http(&daddr, "GET", "/status", &[], "").await, Ok((200, _))) {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Scrollbars would take width from the page the layout checks measure.
            "--hide-scrollbars",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let (status, text) = http(&daddr, "POST", "/session", &[], &caps.to_string()).await.unwrap();
        assert_eq!(status, 200, "new session: {text}");
        let session = serde_json::from_str::<Value>(&text).unwrap()["value"]["sessionId"].as_str().unwrap().to_string();
        Some(Browser {
            d: Driver { addr: daddr.clone(), session: session.clone() },
            _guard: SessionGuard { addr: daddr, session },
            _driver_proc: driver_proc,
            _profile: profile,
        })
    }

    pub async fn login(&self, server: &str, username: &str, password: &str) {
        self.d.goto(&format!("http://{server}/login")).await;
        self.d.type_into("#username", username).await;
        self.d.type_into("#password", password).await;
        self.d.click("#login").await;
        self.d.wait_for("return document.querySelector('.projects') !== null", "the project list").await;
    }
}

/// A project with `config` and `jsonl` items, a member `ann`, served on loopback.
pub async fn serve_project(db: &TestDb, config: Value, jsonl: &str) -> (String, reins_feedback::db::Project, Db) {
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "browser", &config).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, jsonl).await.unwrap();
    let u = reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.add_member(&p.id, &u.id).await.unwrap();
    let dbh = st.db.clone();
    (spawn_server(st).await, p, dbh)
}

/// What the page says after a submit: "saved" once the next page has loaded, else the status line.
pub const AFTER_SUBMIT: &str = "if (document.getElementById('done') !== null) return 'saved'; \
    const s = document.getElementById('status'); \
    return s && /^(Still|Not saved)/.test(s.textContent) ? s.textContent : null;";

impl Driver {
    /// Chrome DevTools commands through chromedriver (viewport and colour-scheme emulation).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd("POST", "/goog/cdp/execute", json!({"cmd": cmd, "params": params})).await
    }
    pub async fn viewport(&self, width: u32, dark: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
        let scheme = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }
    pub async fn login(&self, server: &str, user: &str, password: &str) {
        self.cmd("DELETE", "/cookie", json!({})).await;
        self.goto(&format!("http://{server}/login")).await;
        self.type_into("#username", user).await;
        self.type_into("#password", password).await;
        self.click("#login").await;
        self.wait_for("return location.pathname === '/'", "the home page after login").await;
    }
    /// Writes the viewport as `docs/img/feedback-{name}.png` (regenerated by every run).
    pub async fn screenshot(&self, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64_decode(b64.as_str().expect("screenshot is base64"));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("feedback-{name}.png")), png).unwrap();
    }
    /// Elements (by description) wider than their box at the current viewport.
    pub async fn overflowing(&self) -> Value {
        self.js(
            "const out = [];
             const de = document.documentElement;
             if (de.scrollWidth > de.clientWidth) out.push('document ' + de.scrollWidth + ' > ' + de.clientWidth);
             document.querySelectorAll('table, .label-page, .card, pre, .responses, svg').forEach((e) => {
               const r = e.getBoundingClientRect();
               if (e.scrollWidth > e.clientWidth + 1 || r.right > de.clientWidth + 1)
                 out.push(e.tagName + '.' + e.className + ' ' + e.scrollWidth + '/' + Math.round(r.right) + ' > ' + e.clientWidth);
             });
             return out;",
        )
        .await
    }
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| n | (u32::from(val(c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Labels `n` items through the JSON API as `user` with the same `answers`.
pub async fn label_via_api(server: &str, project: &str, user: &str, n: usize, answers: Value, time_ms: i64) {
    let body = json!({"username": user, "password": "annotator-pw"}).to_string();
    let (status, text) = http(server, "POST", "/api/login", &[], &body).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    for i in 0..n {
        let (status, text) = http(server, "GET", &format!("/api/projects/{project}/next"), &auth, "").await.unwrap();
        assert_eq!(status, 200, "{text}");
        let t: Value = serde_json::from_str(&text).unwrap();
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": format!("{user}-{i}"),
                          "answers": answers, "time_ms": time_ms * (i as i64 + 1)});
        let (status, text) =
            http(server, "POST", &format!("/api/projects/{project}/submissions"), &auth, &body.to_string())
                .await
                .unwrap();
        assert_eq!(status, 201, "{text}");
    }
}
