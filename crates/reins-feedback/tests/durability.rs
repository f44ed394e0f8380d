//! The database survives a killed server: the test binary re-runs itself as a child
//! process serving the database, the parent submits labels over loopback, SIGKILLs the
//! child mid-run, then reopens the file and finds every acknowledged submission.
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
}
