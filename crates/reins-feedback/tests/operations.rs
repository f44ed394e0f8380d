//! What operators and people in a browser see when something goes wrong: HTML error pages
//! for pages (JSON for the API), an error id instead of internals, `Retry-After` on 429,
//! and a login that returns to the page that asked for it.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::json;

#[tokio::test]
async fn page_errors_are_html_and_api_errors_json() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let page = c.call("GET", "/p/no-such-project", Auth::Cookie(&admin), None).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let ct = page.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "a page error is a page, not {ct}: {}", page.text);
    assert!(page.text.contains("no project `no-such-project`") && page.text.contains("href=\"/\""), "{}", page.text);
    let unknown = c.call("GET", "/no/such/page", Auth::Cookie(&admin), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.headers["content-type"].to_str().unwrap().starts_with("text/html"), "{:?}", unknown.headers);
    let api = c.call("GET", "/api/projects/no-such-project", Auth::Cookie(&admin), None).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json()["error"], "no project `no-such-project`");
}

/// A server error answers with an id to quote, never the internals (SQL, file paths).
#[tokio::test]
async fn server_errors_answer_an_id_not_internals() {
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let pool = st.db.pool.clone();
    let c = Client::new(st);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    sqlx::query("DROP TABLE submissions").execute(&pool).await.unwrap();
    let r = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let v = r.json();
    let id = v["error_id"].as_str().unwrap_or_else(|| panic!("no error_id: {v}"));
    assert!(v["error"].as_str().unwrap().contains(id), "{v}");
    assert!(!r.text.contains("submissions") && !r.text.contains("database"), "internals leaked: {}", r.text);
    let page = c.call("GET", &format!("/p/{p}/dashboard"), Auth::Cookie(&admin), None).await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!page.text.contains("no such table"), "internals leaked: {}", page.text);
}

#[tokio::test]
async fn rate_limited_answers_say_when_to_retry() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig { rate_limit_per_minute: 1, ..Default::default() }).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(2)).await;
    let a = c.annotator(&admin, &p, "ann").await;
    let mut last = None;
    for i in 0..2 {
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": i.to_string(), "answers": {"preference": {"choice": "a"}}});
        last = Some(c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&a), Some(body)).await);
    }
    let r = last.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let after = r.headers.get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let secs: u64 = after.as_deref().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("Retry-After: {after:?}"));
    assert!((1..=60).contains(&secs), "{secs}");
}

/// Opening a deep link signed out goes through the login form and back to that page; only
/// local paths are followed (no open redirect).
#[tokio::test]
async fn login_returns_to_the_deep_link() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    let r = c.call("GET", &format!("/p/{p}/dashboard"), Auth::None, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = r.headers["location"].to_str().unwrap().to_string();
    assert_eq!(to, format!("/login?next=%2Fp%2F{p}%2Fdashboard"));
    let form = c.call("GET", &to, Auth::None, None).await;
    // minijinja escapes `/` in attributes as `&#x2f;`, which the browser reads back as `/`.
    let page = form.text.replace("&#x2f;", "/");
    assert!(page.contains(&format!("name=\"next\" value=\"/p/{p}/dashboard\"")), "{}", form.text);
    let pre = form.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = pre.split_once('=').unwrap().1.to_string();
    let login = |next: String| {
        let body = format!("username=admin&password={ADMIN_PASSWORD}&csrf={csrf}&next={next}");
        let req = Request::post("/login")
            .header("cookie", pre.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        c.router.clone().oneshot(req)
    };
    let res = login(format!("%2Fp%2F{p}%2Fdashboard")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], format!("/p/{p}/dashboard").as_str());
    for evil in ["%2F%2Fevil.example%2F", "https%3A%2F%2Fevil.example%2F", "%2F%5Cevil.example"] {
        let res = login(evil.to_string()).await.unwrap();
        assert_eq!(res.headers()["location"], "/", "next={evil}");
    }
}
