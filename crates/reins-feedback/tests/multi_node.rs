//! Several web nodes on one PostgreSQL database. Two real `reins serve` processes (this test
//! binary re-run as children) start together on a fresh database; annotators spread over
//! both, some logging in on one node and labelling through the other; one node is
//! SIGKILLed mid-run and its annotators retry, with the same idempotency keys, on the
//! survivor. Afterwards every assignment was labelled exactly once, nothing lost. Also:
//! nodes migrating a fresh database at the same moment apply each migration once, and a
//! lock-out or a logout on one node holds on the other. PostgreSQL only
//! (`REINS_TEST_POSTGRES_URL`): SQLite serves one node.
mod common;
use common::*;
use reins_feedback::{Db, Role};
use serde_json::{json, Value};
use sqlx::Row;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ANNOTATORS: usize = 16;
const PER_ANNOTATOR: usize = 8;
const LABELS: usize = ANNOTATORS * PER_ANNOTATOR;

/// Runs only as a child of the tests below: one web node.
#[test]
fn multi_node_child_server() {
    child::serve_from_env();
}

/// Two nodes started at the same moment on `url`. Each gets its own spelling of the URL
/// (an `application_name`), which keeps their address files apart.
async fn two_nodes(url: &str) -> (child::ChildServer, child::ChildServer) {
    let a = format!("{url}?application_name=reins-node-a");
    let b = format!("{url}?application_name=reins-node-b");
    tokio::join!(child::spawn("multi_node_child_server", &a, &[]), child::spawn("multi_node_child_server", &b, &[]))
}

async fn count(db: &Db, sql: &str, project: &str) -> i64 {
    sqlx::query(sql).bind(project).fetch_one(&db.pool).await.unwrap().try_get("n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_migrating_a_fresh_database_together_apply_each_migration_once() {
    const NODES: usize = 4;
    let Some(pg) = postgres_db().await else {
        return;
    };
    let start = Arc::new(tokio::sync::Barrier::new(NODES));
    let nodes: Vec<_> = (0..NODES)
        .map(|_| {
            let (url, start) = (pg.url.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                Db::connect(&url).await
            })
        })
        .collect();
    for node in nodes {
        let db = node.await.unwrap().expect("every node starting together opens the database");
        db.pool.close().await;
    }
    let db = Db::connect(&pg.url).await.unwrap();
    let rows = sqlx::query("SELECT version, COUNT(*) AS n FROM reins_migrations GROUP BY version ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "no migration recorded");
    for (i, row) in rows.iter().enumerate() {
        let (version, n): (i64, i64) = (row.try_get("version").unwrap(), row.try_get("n").unwrap());
        assert_eq!(version, i as i64 + 1, "migrations recorded out of order");
        assert_eq!(n, 1, "migration {version} recorded {n} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_and_sessions_hold_across_nodes() {
    if child::in_child() {
        return;
    }
    let Some(pg) = postgres_db().await else {
        return;
    };
    let (a, b) = two_nodes(&pg.url).await;
    let db = Db::connect(&pg.url).await.unwrap();
    reins_feedback::create_user(&db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    let guesser = Ipv4Addr::new(127, 0, 3, 1);
    let wrong = json!({"username": "ann", "password": "wrong-password"}).to_string();
    for n in 0..reins_feedback::throttle::PAIR_FREE_FAILURES {
        let (status, _, text) = http_from(guesser, &a.addr, "POST", "/api/login", &[], &wrong).await.unwrap();
        assert_eq!(status, 401, "guess {n} on node A: {text}");
    }
    // Locked out on node A, so also on node B, even with the right password.
    let right = json!({"username": "ann", "password": "annotator-pw"}).to_string();
    let (status, head, text) = http_from(guesser, &b.addr, "POST", "/api/login", &[], &right).await.unwrap();
    assert_eq!(status, 429, "node B forgot the lock-out earned on node A: {text}");
    assert!(head.contains("retry-after:"), "429 without Retry-After: {head}");
    // Another address is not locked out; its session works on both nodes, and a logout on
    // one ends it on the other.
    let owner = Ipv4Addr::new(127, 0, 3, 2);
    let (status, _, text) = http_from(owner, &b.addr, "POST", "/api/login", &[], &right).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let (status, text) = http(&a.addr, "GET", "/api/me", &auth, "").await.unwrap();
    assert_eq!(status, 200, "a session made on node B is unknown on node A: {text}");
    let (status, text) = http(&a.addr, "POST", "/api/logout", &auth, "").await.unwrap();
    assert!(status < 300, "logout on node A: {status} {text}");
    let (status, _) = http(&b.addr, "GET", "/api/me", &auth, "").await.unwrap();
    assert_eq!(status, 401, "a session ended on node A still works on node B");
}

/// Sends to `nodes[*at]`; when that node does not answer (it died), moves to the other one
/// for good and sends the same request again.
async fn send(
    nodes: &[String; 2],
    at: &mut usize,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    auth: &[(&str, String)],
    body: &str,
) -> (u16, String) {
    for _ in 0..100 {
        match http_from(from, &nodes[*at], method, path, auth, body).await {
            Ok((status, _, text)) => return (status, text),
            Err(_) => {
                *at = 1 - *at;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    panic!("no node answered {method} {path}");
}

struct Annotated {
    /// Milliseconds from the first send of each submission to its acknowledgement.
    latencies_ms: Vec<f64>,
    /// Requests (task fetches and submissions) resent to the other node when theirs died.
    resent: usize,
    /// Of those, submissions: retried with the same key on the survivor.
    resent_submits: usize,
}

/// Annotator `i`: logs in on its home node, waits for `go`, then labels `PER_ANNOTATOR`
/// items. Every third annotator sends each request to the node it did not log in on; every
/// other submission is sent once more to the other node, which must answer "already stored".
async fn annotate(
    nodes: [String; 2],
    project: String,
    i: usize,
    go: Arc<tokio::sync::Barrier>,
    acked: Arc<AtomicUsize>,
) -> Annotated {
    let from = Ipv4Addr::new(127, 0, 4, 1 + i as u8);
    let home = i % 2;
    let mut at = home;
    let login = json!({"username": format!("ann{i}"), "password": "annotator-pw"}).to_string();
    let (status, text) = send(&nodes, &mut at, from, "POST", "/api/login", &[], &login).await;
    assert_eq!(status, 200, "{text}");
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    if i.is_multiple_of(3) {
        at = 1 - home;
    }
    go.wait().await;
    let mut out = Annotated { latencies_ms: Vec::new(), resent: 0, resent_submits: 0 };
    for n in 0..PER_ANNOTATOR {
        let before = at;
        let (status, text) =
            send(&nodes, &mut at, from, "GET", &format!("/api/projects/{project}/next"), &auth, "").await;
        assert_eq!(status, 200, "{text}");
        out.resent += usize::from(at != before);
        let task: Value = serde_json::from_str(&text).unwrap();
        assert!(task["assignment_id"].is_string(), "ann{i} got no task {n}: {text}");
        let body = json!({"assignment_id": task["assignment_id"], "idempotency_key": format!("ann{i}-{n}"),
                          "answers": {"preference": {"choice": if n % 2 == 0 { "a" } else { "b" }}}, "time_ms": 100})
        .to_string();
        let path = format!("/api/projects/{project}/submissions");
        let (first, sent) = (at, Instant::now());
        let (status, text) = send(&nodes, &mut at, from, "POST", &path, &auth, &body).await;
        // 200: a request the dead node committed before it could answer, retried here.
        assert!(status == 201 || (status == 200 && at != first), "submit answered {status}: {text}");
        out.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
        out.resent += usize::from(at != first);
        out.resent_submits += usize::from(at != first);
        acked.fetch_add(1, Ordering::SeqCst);
        if n % 2 == 0 {
            let mut other = 1 - at;
            let (status, text) = send(&nodes, &mut other, from, "POST", &path, &auth, &body).await;
            assert_eq!(status, 200, "a retry on another node was not recognised: {text}");
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_one_killed_mid_run_store_every_label_exactly_once() {
    if child::in_child() {
        return;
    }
    let Some(pg) = postgres_db().await else {
        return;
    };
    let began = Instant::now();
    let (mut a, b) = two_nodes(&pg.url).await;
    let db = Db::connect(&pg.url).await.unwrap();
    let p = reins_feedback::create_project(&db, "multi", &pairwise_config(1)).await.unwrap();
    reins_feedback::import::import_jsonl(&db, &p.id, &items_jsonl(LABELS)).await.unwrap();
    for i in 0..ANNOTATORS {
        let u = reins_feedback::create_user(&db, &format!("ann{i}"), "annotator-pw", Role::Annotator).await.unwrap();
        db.add_member(&p.id, &u.id).await.unwrap();
    }
    let nodes = [a.addr.clone(), b.addr.clone()];
    let go = Arc::new(tokio::sync::Barrier::new(ANNOTATORS + 1));
    let acked = Arc::new(AtomicUsize::new(0));
    let annotators: Vec<_> = (0..ANNOTATORS)
        .map(|i| tokio::spawn(annotate(nodes.clone(), p.id.clone(), i, go.clone(), acked.clone())))
        .collect();
    go.wait().await;
    let labelling = Instant::now();
    let run = async {
        while acked.load(Ordering::SeqCst) < LABELS / 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        a.process.kill().expect("SIGKILL node A");
        a.process.wait().unwrap();
        let killed_after = acked.load(Ordering::SeqCst);
        let mut done = Vec::new();
        for t in annotators {
            done.push(t.await.unwrap());
        }
        (killed_after, done)
    };
    let (killed_after, done) =
        tokio::time::timeout(Duration::from_secs(180), run).await.expect("the load test finished in time");
    let seconds = labelling.elapsed().as_secs_f64();
    assert!(killed_after < LABELS, "node A was not killed mid-run");

    let subs = db.submissions(&p.id).await.unwrap();
    assert_eq!(subs.len(), LABELS, "labels lost or duplicated");
    let distinct = |f: &dyn Fn(&reins_feedback::db::Submission) -> String| {
        let mut v: Vec<String> = subs.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.len()
    };
    assert_eq!(distinct(&|s| format!("{}|{}", s.user_id, s.idempotency_key)), LABELS, "a key stored twice");
    assert_eq!(distinct(&|s| s.assignment_id.clone()), LABELS, "an assignment labelled twice");
    assert_eq!(distinct(&|s| s.item_id.clone()), LABELS, "overlap 1: an item labelled twice");
    let sql = "SELECT COUNT(*) AS n FROM assignments WHERE project_id = $1";
    assert_eq!(count(&db, sql, &p.id).await, LABELS as i64, "every assignment handed out once");
    let sql = "SELECT COUNT(*) AS n FROM assignments WHERE project_id = $1 AND status = 'done'";
    assert_eq!(count(&db, sql, &p.id).await, LABELS as i64, "an assignment left open");
    let e = reins_feedback::export_project(&db, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), LABELS, "the export has every label once");
    drop(b);

    let mut latencies: Vec<f64> = done.iter().flat_map(|d| d.latencies_ms.iter().copied()).collect();
    latencies.sort_by(f64::total_cmp);
    let resent: usize = done.iter().map(|d| d.resent).sum();
    let resent_submits: usize = done.iter().map(|d| d.resent_submits).sum();
    println!(
        "multi-node load: {LABELS} labels by {ANNOTATORS} annotators on 2 nodes, node A killed after {killed_after}; \
         {:.0} labels/s; submit latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {resent} requests resent to node B ({resent_submits} submits); \
         test {:.1} s",
        LABELS as f64 / seconds,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        began.elapsed().as_secs_f64()
    );
}
