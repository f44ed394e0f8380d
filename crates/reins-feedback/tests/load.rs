//! Bounded load over a real loopback socket: 32 simulated annotators label concurrently
//! and retry every submit with the same idempotency key (some retries race the original).
//! Afterwards every submission is stored exactly once and none is lost. And a burst of
//! logins for unknown users leaves a real server's memory bounded.
mod common;
use common::*;
use reins_feedback::{Role, ServerConfig};
use serde_json::{json, Value};
use std::time::Duration;

const ANNOTATORS: usize = 32;
const PER_ANNOTATOR: usize = 5;

async fn annotate(addr: String, project: String, username: String, from: std::net::Ipv4Addr) -> Vec<String> {
    let body = json!({"username": username, "password": "annotator-pw"}).to_string();
    // Each annotator at its own machine: 32 logins in flight from one address would count
    // as 32 possible failures against that address's limit (30 a minute).
    let (status, _, text) = http_from(from, &addr, "POST", "/api/login", &[], &body).await.expect("login");
    assert_eq!(status, 200, "{text}");
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let mut keys = Vec::new();
    for n in 0..PER_ANNOTATOR {
        let (status, text) =
            http(&addr, "GET", &format!("/api/projects/{project}/next"), &auth, "").await.expect("next");
        assert_eq!(status, 200, "{text}");
        let t: Value = serde_json::from_str(&text).unwrap();
        let key = format!("{username}-{n}");
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": key, "answers": {"preference": {"choice": if n % 2 == 0 { "a" } else { "b" }}}, "time_ms": 100}).to_string();
        // The original and two retries at once (a client that timed out and resent), then one late retry.
        let path = format!("/api/projects/{project}/submissions");
        let sends = (0..3).map(|_| {
            let (addr, path, body, auth) = (addr.clone(), path.clone(), body.clone(), auth.clone());
            tokio::spawn(async move {
                loop {
                    match http(&addr, "POST", &path, &auth, &body).await {
                        Ok((s, _)) if s == 200 || s == 201 => return s,
                        Ok((s, t)) => panic!("submit answered {s}: {t}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        });
        let mut statuses = Vec::new();
        for s in sends {
            statuses.push(s.await.unwrap());
        }
        let (late, _) = http(&addr, "POST", &path, &auth, &body).await.expect("late retry");
        statuses.push(late);
        assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "exactly one create: {statuses:?}");
        keys.push(key);
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_store_each_submission_exactly_once() {
    let db = sqlite_db();
    load(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_annotators_on_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    load(&db.url).await;
}

async fn load(url: &str) {
    let st = state(url, ServerConfig { rate_limit_per_minute: 0, ..Default::default() }).await;
    let p = reins_feedback::create_project(&st.db, "load", &pairwise_config(1)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &items_jsonl(ANNOTATORS * PER_ANNOTATOR)).await.unwrap();
    for i in 0..ANNOTATORS {
        let u = reins_feedback::create_user(&st.db, &format!("ann{i}"), "annotator-pw", Role::Annotator).await.unwrap();
        st.db.add_member(&p.id, &u.id).await.unwrap();
    }
    let dbh = st.db.clone();
    let addr = spawn_server(st).await;
    let run = async {
        let tasks: Vec<_> = (0..ANNOTATORS)
            .map(|i| {
                let from = std::net::Ipv4Addr::new(127, 0, 1, 1 + i as u8);
                tokio::spawn(annotate(addr.clone(), p.id.clone(), format!("ann{i}"), from))
            })
            .collect();
        let mut keys = Vec::new();
        for t in tasks {
            keys.extend(t.await.unwrap());
        }
        keys
    };
    let keys = tokio::time::timeout(Duration::from_secs(120), run).await.expect("load test finished in time");
    let subs = dbh.submissions(&p.id).await.unwrap();
    assert_eq!(subs.len(), ANNOTATORS * PER_ANNOTATOR);
    let mut stored: Vec<String> = subs.iter().map(|s| format!("{}|{}", s.user_id, s.idempotency_key)).collect();
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), keys.len(), "every key stored once");
    let mut items: Vec<&str> = subs.iter().map(|s| s.item_id.as_str()).collect();
    items.sort();
    items.dedup();
    assert_eq!(items.len(), ANNOTATORS * PER_ANNOTATOR, "overlap 1: every item labelled once");
}

/// Runs only as the child of the memory test: the real `reins serve` code path.
#[test]
fn load_child_server() {
    child::serve_from_env();
}

/// 128 logins for unknown users at once, each from its own loopback address (so no
/// per-address limit hides the hashing): the server's peak RSS grows by under 256 MiB.
/// Unbounded argon2 (19 MiB per hash) grew it by gigabytes and kept them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unknown_user_logins_keep_server_memory_bounded() {
    if child::in_child() {
        return;
    }
    const LOGINS: usize = 128;
    const BUDGET_KIB: u64 = 256 * 1024;
    let db = sqlite_db();
    let server = child::spawn("load_child_server", &db.url, &[]).await;
    let addr = server.addr.clone();
    // Warm up: one real login, so the runtime, pool and one hash are already paid for.
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string();
    let (status, text) = http(&addr, "POST", "/api/login", &[], &body).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let (before, _) = server.memory_kib();
    let tasks: Vec<_> = (0..LOGINS)
        .map(|i| {
            let addr = addr.clone();
            let from = std::net::Ipv4Addr::new(127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8);
            let body = json!({"username": format!("nobody-{i}"), "password": format!("guess-{i}-pw")}).to_string();
            tokio::spawn(async move { http_from(from, &addr, "POST", "/api/login", &[], &body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, head, text) = t.await.unwrap().expect("the server answers every login");
        assert!(status == 401 || status == 503, "unknown user got {status}: {text}");
        if status == 503 {
            assert!(head.contains("retry-after:"), "503 without Retry-After: {head}");
        }
        statuses.push(status);
    }
    let (after, peak) = server.memory_kib();
    println!(
        "RSS before {before} KiB, after {after} KiB, peak {peak} KiB; {} x 401, {} x 503",
        statuses.iter().filter(|s| **s == 401).count(),
        statuses.iter().filter(|s| **s == 503).count()
    );
    assert!(
        peak.saturating_sub(before) < BUDGET_KIB,
        "{LOGINS} concurrent unknown-user logins raised the server's peak RSS by {} MiB (before {} MiB, peak {} MiB, after {} MiB)",
        peak.saturating_sub(before) / 1024,
        before / 1024,
        peak / 1024,
        after / 1024
    );
}
