//! Authorization per endpoint (anonymous, wrong role, other project, missing CSRF) and
//! escaping of hostile text (XSS).
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
    // Exactly our two script elements: the JSON data block and /static/app.js.
    assert_eq!(html.matches("<script").count(), 2, "{html}");
    assert_eq!(html.matches("</script>").count(), 2, "{html}");
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
