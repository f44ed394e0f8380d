//! Authorization per endpoint (anonymous, wrong role, other project, missing CSRF),
//! escaping of hostile text (XSS), login limits under concurrent guessing from many loopback
//! addresses and several web nodes, body limits on open routes, stored secrets, usernames.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn authorization_per_endpoint() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let pa = c.project(&admin, "a", pairwise_config(1)).await;
    let pb = c.project(&admin, "b", pairwise_config(1)).await;
    c.import(&admin, &pa, &items_jsonl(2)).await;
    c.import(&admin, &pb, &items_jsonl(2)).await;
    let ann_a = c.annotator(&admin, &pa, "ann-a").await;
    let ann_b = c.annotator(&admin, &pb, "ann-b").await;
    let task_b = c.call("GET", &format!("/api/projects/{pb}/next"), Auth::Cookie(&ann_b), None).await.json();
    let submit_b = json!({"assignment_id": task_b["assignment_id"], "idempotency_key": "x", "answers": {"preference": {"choice": "a"}}});

    // (method, path, body, status for annotator of project a)
    let endpoints: Vec<(&str, String, Option<serde_json::Value>, u16)> = vec![
        ("GET", "/api/me".into(), None, 200),
        ("GET", "/api/projects".into(), None, 200),
        ("POST", "/api/invites".into(), Some(json!({"role": "admin"})), 403),
        ("POST", "/api/projects".into(), Some(json!({"name": "n", "config": pairwise_config(1)})), 403),
        ("GET", format!("/api/projects/{pb}"), None, 403),
        ("POST", format!("/api/projects/{pa}/members"), Some(json!({"username": "ann-b"})), 403),
        ("POST", format!("/api/projects/{pa}/items"), Some(json!({"prompt": "p", "responses": ["a", "b"]})), 403),
        ("GET", format!("/api/projects/{pb}/next"), None, 403),
        ("POST", format!("/api/projects/{pb}/submissions"), Some(submit_b.clone()), 403),
        // Another user's assignment in one's own project is not found.
        ("POST", format!("/api/projects/{pa}/submissions"), Some(submit_b.clone()), 404),
        ("GET", format!("/api/projects/{pa}/stats"), None, 403),
        ("GET", format!("/api/projects/{pa}/export/raw"), None, 403),
        ("POST", "/api/logout".into(), None, 204),
    ];
    for (method, path, body, want) in &endpoints {
        let anon = c.call(method, path, Auth::None, body.clone()).await;
        assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "anonymous {method} {path}: {}", anon.text);
        if *method == "POST" {
            let r = c.call(method, path, Auth::CookieNoCsrf(&ann_a), body.clone()).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF {method} {path}: {}", r.text);
            assert!(r.text.contains("CSRF"), "{}", r.text);
        }
        let r = c.call(method, path, Auth::Cookie(&ann_a), body.clone()).await;
        assert_eq!(r.status.as_u16(), *want, "annotator {method} {path}: {}", r.text);
    }
    // The session is gone after logout.
    assert_eq!(c.call("GET", "/api/me", Auth::Cookie(&ann_a), None).await.status, StatusCode::UNAUTHORIZED);
    // Nothing was stored by the refused calls.
    let raw = c.call("GET", &format!("/api/projects/{pb}/export/raw"), Auth::Cookie(&admin), None).await;
    assert_eq!(raw.text.lines().count(), 0);

    // Pages: anonymous users are sent to the login page; wrong roles are refused.
    let ann_b2 = c.login("ann-b", "annotator-pw").await;
    let r = c.call("GET", "/", Auth::None, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/login");
    assert_eq!(c.call("GET", &format!("/p/{pa}"), Auth::Cookie(&ann_b2), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.call("GET", &format!("/p/{pb}/dashboard"), Auth::Cookie(&ann_b2), None).await.status,
        StatusCode::FORBIDDEN
    );
    let form = format!("csrf={}&role=admin", ann_b2.csrf);
    let r = c
        .raw("POST", &format!("/p/{pb}/invite"), Auth::Cookie(&ann_b2), "application/x-www-form-urlencoded", form)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .raw(
            "POST",
            &format!("/p/{pb}/invite"),
            Auth::Cookie(&admin),
            "application/x-www-form-urlencoded",
            "csrf=wrong&role=admin".into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The login form needs its pre-session CSRF cookie.
    let r = c
        .raw(
            "POST",
            "/login",
            Auth::None,
            "application/x-www-form-urlencoded",
            "username=admin&password=admin-password&csrf=abc".into(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(c.call("GET", &format!("/p/{pb}/dashboard"), Auth::Cookie(&admin), None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn hostile_text_is_escaped_on_pages() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let mut cfg = pairwise_config(1);
    cfg["guidelines"] =
        json!("Read <script>alert('g')</script> and [this](javascript:alert(1)) ![img](http://evil/x.png)");
    let p = c.project(&admin, "<b>bold</b>", cfg).await;
    let evil = json!({"id": "evil", "prompt": "<script>alert('p')</script>", "responses": ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>"]});
    c.import(&admin, &p, &format!("{evil}\n")).await;
    let a = c.annotator(&admin, &p, "ann").await;
    let page = c.call("GET", &format!("/p/{p}"), Auth::Cookie(&a), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text;
    assert!(html.contains("&lt;script&gt;alert("), "prompt not escaped");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<img"), "raw img tag on the page");
    assert!(!html.contains("<b>bold"), "project name not escaped");
    assert!(!html.contains("javascript:"), "javascript: link kept");
    // Only our own script elements: JSON data blocks and scripts under /static/.
    for tag in html.split("<script").skip(1) {
        assert!(tag.starts_with(" type=\"application/json\"") || tag.starts_with(" src=\"/static/"), "{html}");
    }
    assert!(html.matches("<script").count() >= 2, "{html}");
    assert_eq!(html.matches("</script>").count(), html.matches("<script").count(), "{html}");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let dash = c.call("GET", &format!("/p/{p}/dashboard"), Auth::Cookie(&admin), None).await.text;
    assert!(!dash.contains("<b>bold") && dash.contains("&lt;b&gt;bold"));
}

/// The invite and login forms: pre-session CSRF cookie, account creation, session cookie.
#[tokio::test]
async fn invite_and_login_forms() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let token = st.db.create_invite(reins_feedback::Role::Annotator, None, None, 60_000).await.unwrap();
    let c = Client::new(st);
    let form = c.call("GET", &format!("/invite/{token}"), Auth::None, None).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    let set = form.headers["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let pre = set.split(';').next().unwrap().to_string(); // reins_pre=<token>
    let csrf = pre.split_once('=').unwrap().1.to_string();
    assert!(form.text.contains(&csrf));
    let post = |path: String, cookie: String, body: String| {
        let req = Request::post(path)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        c.router.clone().oneshot(req)
    };
    let res =
        post(format!("/invite/{token}"), pre.clone(), format!("username=newbie&password=long-enough-pw&csrf={csrf}"))
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(session.starts_with("reins_session="));
    // The invite is used up; the new account can log in through the form.
    assert_eq!(c.call("GET", &format!("/invite/{token}"), Auth::None, None).await.status, StatusCode::NOT_FOUND);
    let login = c.call("GET", "/login", Auth::None, None).await;
    let pre = login.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = pre.split_once('=').unwrap().1.to_string();
    let bad = post("/login".into(), pre.clone(), format!("username=newbie&password=wrong-password&csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let ok = post("/login".into(), pre, format!("username=newbie&password=long-enough-pw&csrf={csrf}")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let home = c
        .router
        .clone()
        .oneshot(Request::get("/").header("cookie", session).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
}

// ---- logins under attack: concurrent guesses, many addresses, several web nodes

fn ip(d: u8) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, d)
}

/// `n` concurrent logins as `user` (or `user-<i>` when `distinct`) from `from`; the statuses.
async fn logins(
    addr: &str,
    from: std::net::Ipv4Addr,
    user: &str,
    password: &str,
    n: usize,
    distinct: bool,
) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let name = if distinct { format!("{user}-{i}") } else { user.to_string() };
            let body = json!({"username": name, "password": password}).to_string();
            let addr = addr.to_string();
            tokio::spawn(async move { http_from(from, &addr, "POST", "/api/login", &[], &body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, head, text) = t.await.unwrap().expect("login answered");
        if status == 429 {
            assert!(head.contains("retry-after:"), "429 without Retry-After: {head}");
        }
        assert!([200, 401, 429].contains(&status), "{status}: {text}");
        statuses.push(status);
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn parallel_guesses_are_counted(url: &str) {
    let addr = spawn_server(state(url, ServerConfig::default()).await).await;
    // 40 wrong guesses for one account at once: only the first few may be checked.
    let s = logins(&addr, ip(2), "admin", "wrong-password", 40, false).await;
    assert!(count(&s, 401) <= 10, "{} of 40 parallel guesses were checked: {s:?}", count(&s, 401));
    // One address spraying 90 different usernames at once is limited too (30 a minute; 60
    // should the burst straddle two minutes).
    let s = logins(&addr, ip(3), "nobody", "wrong-password", 90, true).await;
    assert!(count(&s, 401) <= 60, "{} of 90 parallel guesses from one address were checked", count(&s, 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_login_guesses_are_counted_per_user_and_address() {
    parallel_guesses_are_counted(&sqlite_db().url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_login_guesses_are_counted_on_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    parallel_guesses_are_counted(&db.url).await;
}

/// Two web nodes on one database share the lock-out: failures on one count on the other.
async fn nodes_share_lockout(url: &str) {
    let node_a = spawn_server(state(url, ServerConfig::default()).await).await;
    let db_b = reins_feedback::Db::connect(url).await.unwrap();
    let node_b = spawn_server(reins_feedback::AppState::new(db_b, ServerConfig::default())).await;
    for _ in 0..10 {
        let s = logins(&node_a, ip(4), "admin", "wrong-password", 1, false).await;
        assert!(s[0] == 401 || s[0] == 429);
    }
    let s = logins(&node_b, ip(4), "admin", ADMIN_PASSWORD, 1, false).await;
    assert_eq!(s, vec![429], "node B did not see the failures counted on node A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_nodes_share_the_login_lockout() {
    nodes_share_lockout(&sqlite_db().url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_nodes_share_the_login_lockout_on_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    nodes_share_lockout(&db.url).await;
}

/// Strangers guessing the admin's password from three addresses do not lock the admin out:
/// the right password from a clean address gets in; the guessers stay locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guessers_cannot_lock_the_admin_out() {
    let db = sqlite_db();
    let addr = spawn_server(state(&db.url, ServerConfig::default()).await).await;
    let attacks: Vec<_> = (10..13)
        .map(|d| {
            let addr = addr.clone();
            tokio::spawn(async move { logins(&addr, ip(d), "admin", "wrong-password", 12, false).await })
        })
        .collect();
    for a in attacks {
        assert_eq!(count(&a.await.unwrap(), 200), 0);
    }
    let s = logins(&addr, ip(20), "admin", ADMIN_PASSWORD, 1, false).await;
    assert_eq!(s, vec![200], "the admin, from a clean address with the right password, was locked out");
    // A guesser's address stays locked even with the right password.
    let s = logins(&addr, ip(10), "admin", ADMIN_PASSWORD, 1, false).await;
    assert_eq!(s, vec![429], "a guessing address was let in");
}

/// Oversized bodies on routes open to anyone are refused before anything is parsed,
/// however many arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unauthenticated_routes_refuse_large_bodies() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let big = "x".repeat(1 << 20);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let router = c.router.clone();
            let (path, body) = match i % 2 {
                0 => ("/api/login".to_string(), json!({"username": "admin", "password": big}).to_string()),
                _ => ("/api/invites/abc/accept".to_string(), json!({"username": big, "password": big}).to_string()),
            };
            tokio::spawn(async move {
                use tower::ServiceExt;
                let req = axum::http::Request::post(path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                router.oneshot(req).await.unwrap().status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "a 1 MiB body to an open route was accepted");
    }
}

// ---- stored secrets and accounts

/// The database holds no usable session token, and is readable by its owner only.
#[tokio::test]
async fn session_tokens_are_stored_hashed() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let s = c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(c.call("GET", "/api/me", Auth::Bearer(&s), None).await.status, StatusCode::OK);
    let conn = reins_feedback::Db::connect(&db.url).await.unwrap();
    let rows = sqlx::query("SELECT * FROM sessions").fetch_all(&conn.pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    for i in 0..sqlx::Row::len(&rows[0]) {
        let v: Option<String> = sqlx::Row::try_get(&rows[0], i).unwrap_or(None);
        assert_ne!(v.as_deref(), Some(s.token.as_str()), "the session token is stored in plain text");
    }
    conn.pool.close().await;
    for f in [db.url.clone(), format!("{}-wal", db.url)] {
        if let Ok(bytes) = std::fs::read(&f) {
            assert!(!bytes.windows(s.token.len()).any(|w| w == s.token.as_bytes()), "token found in {f}");
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn database_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    c.login("admin", ADMIN_PASSWORD).await;
    for f in [db.url.clone(), format!("{}-wal", db.url), format!("{}-shm", db.url)] {
        if let Ok(m) = std::fs::metadata(&f) {
            let mode = m.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{f} has mode {mode:o}: others can read the sessions and password hashes");
        }
    }
}

/// A database file made before (or by another tool) with a world-readable mode is made
/// owner-only when the server opens it: it holds sessions and password hashes.
#[cfg(unix)]
#[tokio::test]
async fn an_existing_world_readable_database_is_made_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = sqlite_db();
    drop(state(&db.url, ServerConfig::default()).await);
    std::fs::set_permissions(&db.url, std::fs::Permissions::from_mode(0o644)).unwrap();
    let reopened = reins_feedback::Db::connect(&db.url).await.expect("reopen");
    let mode = std::fs::metadata(&db.url).unwrap().permissions().mode() & 0o777;
    drop(reopened);
    assert_eq!(mode, 0o600, "the reopened database still has mode {mode:o}");
}

/// `Alice` and `alice` are one account: the second is refused, and any case logs in.
#[tokio::test]
async fn usernames_are_case_insensitive() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "p", pairwise_config(1)).await;
    c.annotator(&admin, &p, "Alice").await;
    let r = c.call("POST", "/api/invites", Auth::Cookie(&admin), Some(json!({"role": "annotator"}))).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "alice", "password": "annotator-pw"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "`alice` was created beside `Alice`: {}", r.text);
    c.login("ALICE", "annotator-pw").await;
    let r = c
        .call("POST", &format!("/api/projects/{p}/members"), Auth::Cookie(&admin), Some(json!({"username": "aLiCe"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let err =
        reins_feedback::create_user(&c_db(&db.url).await, "ADMIN", "another-pw", reins_feedback::Role::Admin).await;
    assert!(err.is_err(), "`ADMIN` was created beside `admin`");
}

async fn c_db(url: &str) -> reins_feedback::Db {
    reins_feedback::Db::connect(url).await.unwrap()
}

/// A database from before usernames were compared without case: the upgrade lower-cases
/// names and drops plain-text sessions, and stops, naming them, when two names collide.
#[tokio::test]
async fn upgrade_lowercases_usernames_and_refuses_case_collisions() {
    async fn old_database(path: &str, names: &[&str]) {
        sqlx::any::install_default_drivers();
        let mut conn =
            <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("sqlite://{path}?mode=rwc")).await.unwrap();
        let init = include_str!("../migrations/0001_init.sql");
        let stmts = init.split(';').filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim().starts_with("--")));
        for stmt in stmts {
            sqlx::query(stmt).execute(&mut conn).await.unwrap();
        }
        sqlx::query("CREATE TABLE reins_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO reins_migrations VALUES (1, 0)").execute(&mut conn).await.unwrap();
        for (i, name) in names.iter().enumerate() {
            sqlx::query("INSERT INTO users VALUES ($1, $2, 'x', 'annotator', 0)")
                .bind(i.to_string())
                .bind(*name)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO sessions VALUES ('plain-token', '0', 'csrf', 99999999999999)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let clash = dir.path().join("clash.db").to_string_lossy().into_owned();
    old_database(&clash, &["Alice", "alice", "bob"]).await;
    let err = match reins_feedback::Db::connect(&clash).await {
        Ok(_) => panic!("a database with `Alice` and `alice` was upgraded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("Alice, alice") && err.contains("rename"), "{err}");

    let fine = dir.path().join("fine.db").to_string_lossy().into_owned();
    old_database(&fine, &["Alice", "bob"]).await;
    let db = reins_feedback::Db::connect(&fine).await.unwrap();
    assert_eq!(db.user_by_name("ALICE").await.unwrap().unwrap().username, "alice");
    let n: i64 =
        sqlx::Row::try_get(&sqlx::query("SELECT COUNT(*) AS n FROM sessions").fetch_one(&db.pool).await.unwrap(), "n")
            .unwrap();
    assert_eq!(n, 0, "plain-text sessions survived the upgrade");
}
