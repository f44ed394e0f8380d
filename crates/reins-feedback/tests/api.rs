//! In-process API tests on SQLite, and the same round trip on PostgreSQL when
//! `REINS_TEST_POSTGRES_URL` is set.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::{json, Value};

/// Admin creates a project, imports items, two annotators label with overlap 2, a retry
/// is answered from the stored submission, stats and exports reflect every label.
async fn round_trip(url: &str) {
    let c = Client::new(state(url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "prefs", pairwise_config(2)).await;
    let again = json!({"name": "prefs", "config": pairwise_config(1)});
    let r = c.call("POST", "/api/projects", Auth::Cookie(&admin), Some(again)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "project names are unique: {}", r.text);
    let mut jsonl = items_jsonl(3);
    jsonl.push_str("{\"prompt\": \"gold\", \"responses\": [\"right\", \"wrong\"], \"id\": \"g1\", \"gold\": {\"preference\": 0}}\n");
    jsonl.push_str("this is not json\n");
    let report = c.import(&admin, &p, &jsonl).await;
    assert_eq!(report["imported"], 4, "{report}");
    assert_eq!(report["errors"][0]["line"], 5);
    // Re-importing the same file adds nothing.
    assert_eq!(c.import(&admin, &p, &jsonl).await["duplicates"], 4);

    let users = [c.annotator(&admin, &p, "ann1").await, c.annotator(&admin, &p, "ann2").await];
    let mut seen = Vec::new();
    for (u, s) in users.iter().enumerate() {
        loop {
            let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(s), None).await;
            if r.status == StatusCode::NO_CONTENT {
                break;
            }
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let t = r.json();
            let responses: Vec<String> = serde_json::from_value(t["responses"].clone()).unwrap();
            // Annotator 1 always prefers the "good"/"right" response; annotator 2 the other.
            let good_pos = responses.iter().position(|x| x.starts_with("good") || x == "right").unwrap();
            let pick = if (u == 0) == (good_pos == 0) { "a" } else { "b" };
            let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": format!("k-{}", t["assignment_id"]), "answers": {"preference": {"choice": pick, "strength": 2}}, "time_ms": 1500});
            let r =
                c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(s), Some(body.clone())).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            let retry = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Bearer(s), Some(body)).await;
            assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
            assert_eq!(retry.json()["duplicate"], true);
            seen.push((u, t["item_id"].as_str().unwrap().to_string()));
        }
    }
    // Overlap 2: both annotators saw the 3 regular items; gold_rate 0 keeps gold out.
    assert_eq!(seen.len(), 6, "{seen:?}");
    // Every item has its 2 labels: a third annotator gets nothing (gold_rate is 0).
    let third = c.annotator(&admin, &p, "ann3").await;
    assert_eq!(
        c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&third), None).await.status,
        StatusCode::NO_CONTENT
    );

    let stats = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await.json();
    assert_eq!(stats["labels"], 6);
    assert_eq!(stats["items_complete"], 3);
    // Two annotators who always disagree: alpha is negative.
    assert!(stats["agreement"]["preference"]["krippendorff_alpha_nominal"].as_f64().unwrap() < 0.0, "{stats}");

    // Position bias is measurable; consensus per item has majority and Bradley–Terry.
    assert!(stats["left_win_rate"].is_number(), "{stats}");
    let consensus = stats["consensus"].as_array().unwrap();
    assert_eq!(consensus.len(), 3);
    assert_eq!(consensus[0]["consensus"]["preference"]["bradley_terry"].as_array().unwrap().len(), 2);
    assert_eq!(stats["annotators"].as_array().unwrap().len(), 2);
    let export =
        c.call("GET", &format!("/api/projects/{p}/export/preference?part=all"), Auth::Cookie(&admin), None).await;
    assert_eq!(export.status, StatusCode::OK);
    let rows: Vec<Value> = export.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    let ann1: Vec<&Value> = rows.iter().filter(|r| r["annotator"] == "ann1").collect();
    assert!(ann1.iter().all(|r| r["chosen"].as_str().unwrap().starts_with("good") && r["margin"] == 2.0), "{ann1:?}");
    let raw = c
        .call("GET", &format!("/api/projects/{p}/export/raw?split=0.5&part=validation"), Auth::Cookie(&admin), None)
        .await;
    let train =
        c.call("GET", &format!("/api/projects/{p}/export/raw?split=0.5&part=train"), Auth::Cookie(&admin), None).await;
    assert_eq!(raw.text.lines().count() + train.text.lines().count(), 6);

    // Progress and charts on this backend: the label page counts progress, the dashboard draws
    // each chart with one series per annotator.
    let page = c.call("GET", &format!("/p/{p}"), Auth::Cookie(&third), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let dash = c.call("GET", &format!("/p/{p}/dashboard"), Auth::Cookie(&admin), None).await.text;
    assert_eq!(dash.matches(r#"<svg class="chart""#).count(), 3, "{dash}");
    assert_eq!(dash.matches(r#"class="series" data-annotator="ann2""#).count(), 3, "{dash}");
}

#[tokio::test]
async fn round_trip_sqlite() {
    let db = sqlite_db();
    round_trip(&db.url).await;
}

#[tokio::test]
async fn round_trip_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    round_trip(&db.url).await;
}

#[tokio::test]
async fn gold_items_skips_and_other_task_types() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let cfg = json!({"overlap": 1, "gold_rate": 1.0, "questions": [
        {"name": "rank", "kind": "ranking"},
        {"name": "rate", "kind": "likert", "aspects": ["helpfulness", "honesty"]},
        {"name": "ok", "kind": "thumbs"},
        {"name": "spans", "kind": "spans", "tags": ["wrong", "unsafe"]},
        {"name": "crit", "kind": "critique"},
        {"name": "rules", "kind": "principles", "principles": ["is polite"]}
    ]});
    let p = c.project(&admin, "many", cfg).await;
    c.import(&admin, &p, "{\"id\": \"g\", \"prompt\": \"q\", \"completions\": [\"one\", \"two\", \"three\"], \"gold\": {\"rank\": [0, 1, 2]}}\n{\"prompt\": \"p\", \"completion\": \"x\"}\n{\"prompt\": \"p\", \"completion\": \"y\"}\n").await;
    let a = c.annotator(&admin, &p, "ann").await;
    // gold_rate 1: the gold item comes first.
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
    assert_eq!(t["item_id"], "g");
    // The label page renders every task type as keyboard fields.
    let page = c.call("GET", &format!("/p/{p}"), Auth::Cookie(&a), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for kind in ["ranking", "likert", "thumbs", "spans", "critique", "principles"] {
        assert!(page.text.contains(&format!("data-kind=\"{kind}\"")), "no {kind} field");
    }
    assert!(page.text.contains(t["assignment_id"].as_str().unwrap()), "the page shows the open assignment");
    let shown: Vec<String> = serde_json::from_value(t["responses"].clone()).unwrap();
    let pos = |s: &str| shown.iter().position(|x| x == s).unwrap();
    let mut span_lists = vec![json!([]), json!([]), json!([])];
    span_lists[pos("one")] = json!([{"start": 0, "end": 2, "tag": "wrong"}]);
    let answers = json!({
        "rank": {"order": [pos("one"), pos("two"), pos("three")]},
        "rate": {"helpfulness": [5, 4, 3], "honesty": [5, 5, 5]},
        "ok": [true, false, true],
        "spans": span_lists,
        "crit": ["<b>too short</b>", "", ""],
        "rules": [[true], [false], [true]]
    });
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/submissions"),
            Auth::Cookie(&a),
            Some(json!({"assignment_id": t["assignment_id"], "idempotency_key": "1", "answers": answers})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The second item is skipped with a reason.
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/submissions"),
            Auth::Cookie(&a),
            Some(json!({"assignment_id": t["assignment_id"], "idempotency_key": "2", "skip": "cannot judge"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.status,
        StatusCode::NO_CONTENT
    );

    let stats = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await.json();
    assert_eq!(stats["annotators"][0]["gold_accuracy"], 1.0, "{stats}");
    assert_eq!(stats["skips"], 1);
    let get = |f: &str| {
        let c = &c;
        let (p, admin) = (p.clone(), admin.clone());
        let f = f.to_string();
        async move {
            c.call("GET", &format!("/api/projects/{p}/export/{f}?part=all"), Auth::Cookie(&admin), None).await.text
        }
    };
    let ranked: Value = serde_json::from_str(get("ranked").await.lines().next().unwrap()).unwrap();
    assert_eq!(ranked["ranks"], json!([0, 1, 2]));
    let kto = get("kto").await;
    assert_eq!(kto.lines().count(), 3);
    assert!(kto.contains("\"label\":false"));
    let spans: Value = serde_json::from_str(get("spans").await.lines().next().unwrap()).unwrap();
    assert_eq!(spans["spans"][0]["text"], "on");
    assert!(get("critiques").await.contains("<b>too short</b>"));
    assert_eq!(get("ratings").await.lines().count(), 3);
    assert_eq!(get("principles").await.lines().count(), 3);
    assert_eq!(get("raw").await.lines().count(), 2);
    let bad = c.call("GET", &format!("/api/projects/{p}/export/nope"), Auth::Cookie(&admin), None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn hostile_input_gets_4xx_with_a_message() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig { max_body_bytes: 1 << 20, ..Default::default() }).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let a = c.annotator(&admin, &p, "ann").await;
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
    let path = format!("/api/projects/{p}/submissions");
    let submit = |body: Value| c.call("POST", &path, Auth::Cookie(&a), Some(body));
    for (body, want) in [
        (
            json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": "c"}}}),
            "not allowed",
        ),
        (
            json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"other": 1, "preference": {"choice": "a"}}}),
            "unknown question",
        ),
        (
            json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": "a", "strength": 9}}}),
            "strength",
        ),
        (json!({"assignment_id": "nope", "idempotency_key": "k", "answers": {}}), "no such assignment"),
        (json!({"assignment_id": t["assignment_id"], "idempotency_key": "", "answers": {}}), "idempotency_key"),
        (json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "skip": ""}), "reason"),
    ] {
        let r = submit(body).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.text);
        assert!(r.json()["error"].as_str().unwrap().contains(want), "{} lacks {want}", r.text);
    }
    // Malformed JSON and a body over the limit.
    let r = c
        .raw("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&a), "application/json", "{".into())
        .await;
    assert!(r.status.is_client_error());
    let big = "x".repeat(2 << 20);
    let r = c.raw("POST", &format!("/api/projects/{p}/items"), Auth::Cookie(&admin), "application/jsonl", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Oversized and malformed import lines are reported by line.
    let long = "y".repeat(200_000);
    let report = c
        .import(
            &admin,
            &p,
            &format!("{{\"prompt\": \"{long}\", \"responses\": [\"a\", \"b\"]}}\n{{\"prompt\": \"p\"}}\n"),
        )
        .await;
    assert_eq!(report["imported"], 0);
    assert_eq!(report["errors"].as_array().unwrap().len(), 2);
    assert!(report["errors"][0]["message"].as_str().unwrap().contains("limit"));
    // Bad project configs, wrong passwords, weak passwords.
    let r = c
        .call(
            "POST",
            "/api/projects",
            Auth::Cookie(&admin),
            Some(json!({"name": "y", "config": {"questions": [{"name": "q", "kind": "likert", "aspects": []}]}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .call("POST", "/api/login", Auth::None, Some(json!({"username": "admin", "password": "wrong-password"})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c.call("POST", "/api/invites", Auth::Cookie(&admin), Some(json!({"role": "annotator"}))).await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "x", "password": "short"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "<script>", "password": "long-enough"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // An invite works once.
    let ok = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "once", "password": "long-enough"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let again = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "twice", "password": "long-enough"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_limit_per_user() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig { rate_limit_per_minute: 2, ..Default::default() }).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(5)).await;
    let a = c.annotator(&admin, &p, "ann").await;
    let mut statuses = vec![];
    for i in 0..3 {
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&a), Some(json!({"assignment_id": t["assignment_id"], "idempotency_key": i.to_string(), "answers": {"preference": {"choice": "a"}}}))).await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, vec![201, 201, 429]);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let login =
        |pw: &'static str| c.call("POST", "/api/login", Auth::None, Some(json!({"username": "admin", "password": pw})));
    for _ in 0..10 {
        assert_eq!(login("wrong-password").await.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits out the minute now.
    assert_eq!(login(ADMIN_PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn openapi_lists_every_api_route() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let doc = c.call("GET", "/api/openapi.json", Auth::None, None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let src = include_str!("../src/app.rs");
    let start = src.find("let api = Router::new()").expect("api router in app.rs");
    let end = start + src[start..].find(".nest(\"/api\"").expect("nest in app.rs");
    let routes: Vec<&str> = src[start..end].split(".route(\"").skip(1).filter_map(|r| r.split('"').next()).collect();
    assert!(routes.len() >= 10, "{routes:?}");
    for path in routes {
        assert!(paths.contains_key(&format!("/api{path}")), "OpenAPI lacks /api{path}");
    }
}

/// An idempotency key names one submission: reusing it for another assignment is a client
/// bug that must not look like a stored answer (it used to return `duplicate: true`).
#[tokio::test]
async fn idempotency_key_reused_for_another_assignment_is_a_conflict() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(2)).await;
    let a = c.annotator(&admin, &p, "ann").await;
    let path = format!("/api/projects/{p}/submissions");
    let mut assignments = vec![];
    for _ in 0..2 {
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await.json();
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "same-key", "answers": {"preference": {"choice": "a"}}});
        let r = c.call("POST", &path, Auth::Cookie(&a), Some(body)).await;
        assignments.push((t["assignment_id"].clone(), r.status, r.text));
    }
    assert_eq!(assignments[0].1, StatusCode::CREATED, "{}", assignments[0].2);
    let (second, status, text) = &assignments[1];
    assert_eq!(*status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("idempotency_key") && text.contains("another assignment"), "{text}");
    // The second assignment is still open and takes an answer under a fresh key.
    let body =
        json!({"assignment_id": second, "idempotency_key": "fresh-key", "answers": {"preference": {"choice": "b"}}});
    assert_eq!(c.call("POST", &path, Auth::Cookie(&a), Some(body)).await.status, StatusCode::CREATED);
    let raw = c.call("GET", &format!("/api/projects/{p}/export/raw"), Auth::Cookie(&admin), None).await;
    assert_eq!(raw.text.lines().count(), 2, "{}", raw.text);
}

/// A 1–1 split has no majority: consensus says tie, and neither voter counts as agreeing
/// or disagreeing with a consensus that does not exist.
#[tokio::test]
async fn a_split_vote_is_a_tie_in_consensus_and_agreement() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(2)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    for (name, wants) in [("ann1", "good"), ("ann2", "bad")] {
        let s = c.annotator(&admin, &p, name).await;
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&s), None).await.json();
        let first = t["responses"][0].as_str().unwrap().to_string();
        let choice = if first.starts_with(wants) { "a" } else { "b" };
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": choice}}});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&s), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let stats = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await.json();
    let pref = &stats["consensus"][0]["consensus"]["preference"];
    assert_eq!(pref["majority"], Value::Null, "a 1-1 split has no majority: {pref}");
    assert_eq!(pref["tie"], true, "{pref}");
    for a in stats["annotators"].as_array().unwrap() {
        assert_eq!(a["agreement_with_consensus"], Value::Null, "no consensus to agree with: {a}");
    }
}

/// An admin who opens a project's label page without being a member previews it: the page
/// shows a task, and the item stays free for the annotators (overlap 1 used to strand it).
#[tokio::test]
async fn an_admin_preview_claims_nothing() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(3)).await;
    let page = c.call("GET", &format!("/p/{p}"), Auth::Cookie(&admin), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Preview") && page.text.contains("prompt 0"), "{}", page.text);
    let a = c.annotator(&admin, &p, "ann").await;
    let mut labelled = 0;
    loop {
        let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&a), None).await;
        if r.status == StatusCode::NO_CONTENT {
            break;
        }
        let t = r.json();
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": t["assignment_id"], "answers": {"preference": {"choice": "a"}}});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&a), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        labelled += 1;
    }
    assert_eq!(labelled, 3, "the preview held an item back");
}

/// A claim lasts `claim_timeout_minutes`; after that another annotator may take the item,
/// and the late answer of the first one is still kept (no lost work).
async fn abandoned_claim_expires(url: &str) {
    let st = state(url, ServerConfig::default()).await;
    let pool = st.db.pool.clone();
    let c = Client::new(st);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let mut cfg = pairwise_config(1);
    cfg["claim_timeout_minutes"] = json!(30);
    let p = c.project(&admin, "x", cfg).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let (ann1, ann2) = (c.annotator(&admin, &p, "ann1").await, c.annotator(&admin, &p, "ann2").await);
    let next_path = format!("/api/projects/{p}/next");
    let first = c.call("GET", &next_path, Auth::Cookie(&ann1), None).await.json();
    let claimed = c.call("GET", &next_path, Auth::Cookie(&ann2), None).await;
    assert_eq!(claimed.status, StatusCode::NO_CONTENT, "the item is claimed");
    let claim_id = first["assignment_id"].as_str().unwrap().to_string();
    let age = |minutes: i64| {
        sqlx::query("UPDATE assignments SET created_at = created_at - $1 WHERE id = $2")
            .bind(minutes * 60_000)
            .bind(claim_id.clone())
            .execute(&pool)
    };
    age(20).await.unwrap();
    let held = c.call("GET", &next_path, Auth::Cookie(&ann2), None).await;
    assert_eq!(held.status, StatusCode::NO_CONTENT, "20 minutes in, the claim holds");
    age(11).await.unwrap();
    let second = c.call("GET", &next_path, Auth::Cookie(&ann2), None).await;
    assert_eq!(second.status, StatusCode::OK, "31 minutes in, the claim has expired: {}", second.text);
    assert_eq!(second.json()["item_id"], first["item_id"]);
    for (s, t) in [(&ann2, second.json()), (&ann1, first)] {
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": "a"}}});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(s), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
}

#[tokio::test]
async fn an_abandoned_claim_expires() {
    let db = sqlite_db();
    abandoned_claim_expires(&db.url).await;
}

#[tokio::test]
async fn an_abandoned_claim_expires_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    abandoned_claim_expires(&db.url).await;
}
