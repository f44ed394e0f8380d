//! One structured log line per request: method, route pattern, status, latency and user
//! id; server errors add the error id and the internal message. Secrets never appear.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn every_request_is_logged_without_secrets() {
    let db = sqlite_db();
    let mut st = state(&db.url, ServerConfig::default()).await;
    let lines: Arc<Mutex<Vec<Value>>> = Default::default();
    let sink = lines.clone();
    st.log = Arc::new(move |v: &Value| sink.lock().unwrap().push(v.clone()));
    let pool = st.db.pool.clone();
    let c = Client::new(st);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let r =
        c.call("POST", "/api/invites", Auth::Cookie(&admin), Some(json!({"role": "annotator", "project_id": p}))).await;
    let invite = r.json()["token"].as_str().unwrap().to_string();
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{invite}/accept"),
            Auth::None,
            Some(json!({"username": "ann", "password": "annotator-pw"})),
        )
        .await;
    let ann = Session {
        token: r.json()["token"].as_str().unwrap().into(),
        csrf: r.json()["csrf_token"].as_str().unwrap().into(),
    };
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Bearer(&ann), None).await.json();
    sqlx::query("DROP TABLE submissions").execute(&pool).await.unwrap();
    let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": "a"}}});
    let failed = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Bearer(&ann), Some(body)).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);

    let lines = lines.lock().unwrap().clone();
    let all = serde_json::to_string(&lines).unwrap();
    for secret in [
        &admin.token,
        &admin.csrf,
        &ann.token,
        &ann.csrf,
        &invite,
        &ADMIN_PASSWORD.to_string(),
        &"annotator-pw".to_string(),
    ] {
        assert!(!all.contains(secret.as_str()), "a secret in the logs: {all}");
    }
    let next = lines.iter().find(|l| l["route"] == "/api/projects/{id}/next").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(next["method"], "GET");
    assert_eq!(next["status"], 200);
    assert!(next["latency_ms"].is_number(), "{next}");
    let ann_id = c.call("GET", "/api/me", Auth::Bearer(&ann), None).await.json()["user"]["id"].clone();
    assert_eq!(next["user_id"], ann_id, "{next}");
    assert!(lines.iter().any(|l| l["route"] == "/api/invites/{token}/accept" && l["status"] == 201), "{all}");
    let err = lines.iter().find(|l| l["status"] == 500).unwrap_or_else(|| panic!("{all}"));
    assert_eq!(err["error_id"], failed.json()["error_id"], "the id the client got names the log line");
    assert!(err["error"].as_str().unwrap().contains("submissions"), "the internal cause is logged: {err}");
}
