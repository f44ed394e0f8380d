//! A real browser: headless Chromium, driven through chromedriver's WebDriver HTTP API,
//! logs in with the login form, labels with keyboard shortcuts only, and the export
//! contains those labels: pairwise votes, an optional strength left out, and spans selected
//! in text the HTML parser would alter. Skipped when Chromium or chromedriver is missing.
mod common;
use common::*;
use reins_feedback::{Db, Role, ServerConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    addr: String,
    session: String,
}

impl Driver {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" { String::new() } else { body.to_string() };
        let (status, text) = http(&self.addr, method, &format!("/session/{}{path}", self.session), &[], &body)
            .await
            .expect("chromedriver");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }
    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }
    async fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css})).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }
    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/value"), json!({"text": text})).await;
    }
    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &format!("/element/{el}/click"), json!({})).await;
    }
    async fn js(&self, script: &str) -> Value {
        self.js_with(script, json!([])).await
    }
    async fn js_with(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }
    /// Key presses through the WebDriver actions API (real keydown/keyup events).
    async fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({"type": "keyDown", "value": k}), json!({"type": "keyUp", "value": k})])
            .collect();
        self.cmd("POST", "/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }
    async fn wait_for(&self, script: &str, what: &str) -> Value {
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
struct SessionGuard {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver plus a headless Chromium session; both end when this is dropped.
struct Browser {
    d: Driver,
    _guard: SessionGuard,
    _driver_proc: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// None (with the skip message) when Chromium or chromedriver is missing.
    async fn start() -> Option<Browser> {
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

    async fn login(&self, server: &str, username: &str, password: &str) {
        self.d.goto(&format!("http://{server}/login")).await;
        self.d.type_into("#username", username).await;
        self.d.type_into("#password", password).await;
        self.d.click("#login").await;
        self.d.wait_for("return document.querySelector('.projects') !== null", "the project list").await;
    }
}

/// A project with `config` and `jsonl` items, a member `ann`, served on loopback.
async fn serve_project(db: &TestDb, config: Value, jsonl: &str) -> (String, reins_feedback::db::Project, Db) {
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "browser", &config).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, jsonl).await.unwrap();
    let u = reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.add_member(&p.id, &u.id).await.unwrap();
    let dbh = st.db.clone();
    (spawn_server(st).await, p, dbh)
}

/// What the page says after a submit: "saved" once the next page has loaded, else the status line.
const AFTER_SUBMIT: &str = "if (document.getElementById('done') !== null) return 'saved'; \
    const s = document.getElementById('status'); \
    return s && /^(Still|Not saved)/.test(s.textContent) ? s.textContent : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_labels_with_the_keyboard_and_export_has_the_labels() {
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, pairwise_config(1), &items_jsonl(3)).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let assignment = d
                .wait_for("const t = document.getElementById('task'); return t ? t.dataset.assignment : null", "a task")
                .await;
            assert!(!seen.contains(&assignment), "same task twice");
            // A is better (1), strength "clearly" (2), submit (Enter).
            d.keys(&["1", "2", "\u{E007}"]).await;
            let script = format!("const t = document.getElementById('task'); return (!t && document.getElementById('done') !== null) || (t !== null && t.dataset.assignment !== {assignment});");
            d.wait_for(&script, "the next task").await;
            seen.push(assignment);
        }
        d.wait_for("return document.getElementById('done') !== null", "the done message").await;
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
    drop(b);

    let e = reins_feedback::export_project(&dbh, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 3, "{:?}", e.train);
    for r in &e.train {
        assert_eq!(r["annotator"], "ann");
        assert_eq!(r["margin"], 2.0);
    }
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    for r in &raw.train {
        assert_eq!(r["answer"]["preference"]["winner_position"], 0, "key 1 picks the left response");
        assert!(r["time_ms"].as_i64().unwrap() > 0);
    }
}

/// Strength is optional: Tie then Enter saves the vote without asking "how much better?".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_saves_a_tie_without_a_strength() {
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, pairwise_config(1), &items_jsonl(1)).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        // Tie (3), submit (Enter).
        d.keys(&["3", "\u{E007}"]).await;
        d.wait_for(AFTER_SUBMIT, "the submit to finish").await
    };
    let after = tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    drop(b);
    assert_eq!(after, "saved", "Tie then Enter");
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    assert_eq!(raw.train.len(), 1);
    assert_eq!(raw.train[0]["answer"]["preference"], json!({"outcome": "tie", "strength": null}));
}

/// Span offsets count Unicode scalar values of the stored text, although the browser drops
/// a leading newline in `<pre>` and turns CRLF into LF when it parses the page: a span
/// selected in the page after a leading newline, CRLFs, an emoji and a combining mark
/// exports the exact stored characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_span_offsets_index_the_stored_text() {
    let text = "\nFirst line\r\nsmile \u{1F600} then cafe\u{301} is wrong here\r\nend";
    let target = "cafe\u{301} is wrong";
    let start = text[..text.find(target).unwrap()].chars().count();
    let end = start + target.chars().count();
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [{"name": "issues", "kind": "spans", "tags": ["wrong", "unsafe"]}]});
    let item = json!({"id": "tricky", "prompt": "\nsay hi\r\n", "responses": [text]}).to_string() + "\n";
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, config, &item).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        // Select the target words in the rendered response, as a mouse drag would.
        let select = "const pre = document.querySelector('pre.response'); \
            const w = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT); \
            for (let n = w.nextNode(); n; n = w.nextNode()) { \
              const i = n.data.indexOf(arguments[0]); \
              if (i >= 0) { const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + arguments[0].length); \
                const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); return true; } } \
            return false;";
        assert_eq!(d.js_with(select, json!([target])).await, true, "the target text is on the page");
        // Tag `wrong` (1), submit (Enter).
        d.keys(&["1", "\u{E007}"]).await;
        d.wait_for(AFTER_SUBMIT, "the submit to finish").await
    };
    let after = tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    drop(b);
    assert_eq!(after, "saved");
    let e = reins_feedback::export_project(&dbh, &p.id, "spans", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 1, "{:?}", e.train);
    assert_eq!(e.train[0]["completion"], text, "the stored text is exported unchanged");
    assert_eq!(
        e.train[0]["spans"],
        json!([{"start": start, "end": end, "tag": "wrong", "text": target}]),
        "offsets in Unicode scalar values of the stored text"
    );
}
