//! The database survives a killed server: the test binary re-runs itself as a child
//! process serving the database, the parent submits labels over loopback, SIGKILLs the
//! child mid-run, then reopens the file and finds every acknowledged submission, session
//! and failed login. Also: SIGTERM is graceful, and start-up lines keep secrets.
mod common;
use common::*;
use reins_feedback::{AppState, Db, Role, ServerConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "REINS_DURABILITY_CHILD_DB";

/// Runs only as the child: serves the database named in the environment, writes its
/// address next to it, and never returns on its own.
#[tokio::test]
async fn durability_child_server() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = Db::connect(&path).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::fs::write(format!("{path}.addr.tmp"), &addr).unwrap();
    std::fs::rename(format!("{path}.addr.tmp"), format!("{path}.addr")).unwrap();
    reins_feedback::app::serve(
        AppState::new(db, ServerConfig { rate_limit_per_minute: 0, ..Default::default() }),
        listener,
        std::future::pending(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn killed_server_keeps_every_acknowledged_submission() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = sqlite_db();
    let project = {
        let db = Db::connect(&tmp.url).await.unwrap();
        let p = reins_feedback::create_project(&db, "d", &pairwise_config(1)).await.unwrap();
        reins_feedback::import::import_jsonl(&db, &p.id, &items_jsonl(40)).await.unwrap();
        let u = reins_feedback::create_user(&db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
        db.add_member(&p.id, &u.id).await.unwrap();
        db.pool.close().await;
        p.id
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "durability_child_server", "--nocapture"])
        .env(CHILD_ENV, &tmp.url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the child server");
    let addr_file = format!("{}.addr", tmp.url);
    let start = Instant::now();
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "child server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, text) =
        http(&addr, "POST", "/api/login", &[], &json!({"username": "ann", "password": "annotator-pw"}).to_string())
            .await
            .unwrap();
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let mut acknowledged = 0;
    for n in 0..20 {
        let (_, text) = http(&addr, "GET", &format!("/api/projects/{project}/next"), &auth, "").await.unwrap();
        let t: Value = serde_json::from_str(&text).unwrap();
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": n.to_string(), "answers": {"preference": {"choice": "a"}}}).to_string();
        let (status, _) =
            http(&addr, "POST", &format!("/api/projects/{project}/submissions"), &auth, &body).await.unwrap();
        assert_eq!(status, 201);
        acknowledged += 1;
    }
    // Someone guesses ann's password from this address: every failure is acknowledged.
    let guess = json!({"username": "ann", "password": "wrong-password"}).to_string();
    for _ in 0..10 {
        let (status, _) = http(&addr, "POST", "/api/login", &[], &guess).await.unwrap();
        assert!(status == 401 || status == 429, "{status}");
    }
    // Logins from other addresses may be in flight at the kill.
    for d in 30..40 {
        let addr = addr.clone();
        let body =
            json!({"username": "ann", "password": if d % 2 == 0 { "annotator-pw" } else { "wrong-pw-x" }}).to_string();
        tokio::spawn(async move {
            http_from(std::net::Ipv4Addr::new(127, 0, 0, d), &addr, "POST", "/api/login", &[], &body).await
        });
    }
    // Fire more submissions without waiting, then kill -9 while they may be in flight.
    for n in 20..30 {
        let (addr, auth, project) = (addr.clone(), auth.clone(), project.clone());
        tokio::spawn(async move {
            let (_, text) = http(&addr, "GET", &format!("/api/projects/{project}/next"), &auth, "").await?;
            let t: Value = serde_json::from_str(&text).unwrap_or_default();
            let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": n.to_string(), "answers": {"preference": {"choice": "b"}}}).to_string();
            http(&addr, "POST", &format!("/api/projects/{project}/submissions"), &auth, &body).await
        });
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    child.kill().expect("SIGKILL the server");
    child.wait().unwrap();

    let db = Db::connect(&tmp.url).await.expect("the database opens after a kill");
    let check: String =
        sqlx::Row::try_get(&sqlx::query("PRAGMA integrity_check").fetch_one(&db.pool).await.unwrap(), 0).unwrap();
    assert_eq!(check, "ok");
    let subs = db.submissions(&project).await.unwrap();
    assert!(subs.len() >= acknowledged, "lost acknowledged submissions: {} < {acknowledged}", subs.len());
    for n in 0..acknowledged {
        assert!(subs.iter().any(|s| s.idempotency_key == n.to_string()), "submission {n} lost");
    }
    // And the data is usable: the export has every stored label.
    let e = reins_feedback::export_project(&db, &project, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), subs.len());

    // Sessions and failed logins survived the kill: the old token works on a new server,
    // and the guessing address is still locked out while a clean one gets in.
    let addr = spawn_server(AppState::new(db, ServerConfig::default())).await;
    let (status, text) = http(&addr, "GET", "/api/me", &auth, "").await.unwrap();
    assert_eq!(status, 200, "the session was lost: {text}");
    let right = json!({"username": "ann", "password": "annotator-pw"}).to_string();
    let (status, _) = http(&addr, "POST", "/api/login", &[], &right).await.unwrap();
    assert_eq!(status, 429, "the failed logins were forgotten by the restart");
    let (status, _, text) =
        http_from(std::net::Ipv4Addr::new(127, 0, 0, 50), &addr, "POST", "/api/login", &[], &right).await.unwrap();
    assert_eq!(status, 200, "{text}");
}

// ---- the real `reins serve` path in a child: start-up lines and SIGTERM

/// Runs only as the child of the tests below.
#[test]
fn durability_serve_child() {
    child::serve_from_env();
}

/// SIGTERM lets a request in flight finish, then the server closes the database and
/// exits cleanly. The request is provably in flight: the server has asked for its body
/// (`100 Continue`) before the signal, and the body is sent only after the server printed
/// that it is shutting down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if child::in_child() {
        return;
    }
    let db = sqlite_db();
    let mut server = child::spawn("durability_serve_child", &db.url, &[]).await;
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let mut s = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"), "no 100 Continue");
    server.signal("TERM");
    if server.wait_for_line("shutting down").is_none() {
        let status = server.process.wait();
        panic!("SIGTERM ended the server at once ({status:?}); output:\n{}", server.drain());
    }
    s.write_all(body.as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "the in-flight login was not answered: {reply:?}");
    let status = server.process.wait().unwrap();
    let out = server.drain();
    assert!(status.success(), "exit {status}: {out}");
    assert!(out.contains("database closed"), "{out}");
}

/// An https base URL without `--secure-cookies` gets a warning at start-up; the database
/// URL's password is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_warns_about_https_without_secure_cookies() {
    if child::in_child() {
        return;
    }
    let db = sqlite_db();
    let mut server =
        child::spawn("durability_serve_child", &db.url, &[(child::CHILD_BASE_URL, "https://label.example.org")]).await;
    server.signal("KILL");
    let out = server.drain();
    assert!(
        out.to_lowercase().contains("warning") && out.contains("--secure-cookies"),
        "no warning about an https base URL without --secure-cookies:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_line_redacts_the_database_password() {
    if child::in_child() {
        return;
    }
    let Some(pg) = postgres_db().await else {
        return;
    };
    // Any password works with CI's trust authentication; it must not be printed.
    let with_password = pg.url.replacen("postgres://postgres@", "postgres://postgres:s3cret-pw@", 1);
    assert_ne!(with_password, pg.url, "unexpected REINS_TEST_POSTGRES_URL shape");
    let mut server = child::spawn("durability_serve_child", &with_password, &[]).await;
    let line = server.wait_for_line("serving on").expect("a start-up line");
    assert!(!line.contains("s3cret-pw"), "the database password was printed: {line}");
    assert!(line.contains("127.0.0.1"), "{line}");
}
