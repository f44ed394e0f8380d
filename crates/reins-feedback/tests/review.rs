//! Annotators fix their own labels and reviewers check them, through
//! the JSON API on SQLite, and on PostgreSQL when `REINS_TEST_POSTGRES_URL` is set: edits
//! and verdicts are new rows, every export reads the effective answer, and each refusal
//! (someone else's label, a non-reviewer, no CSRF token, a reviewed label) is tested.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::{json, Value};

fn config(overlap: u32, gold_rate: f64) -> Value {
    json!({"overlap": overlap, "gold_rate": gold_rate, "gold_feedback": true,
           "questions": [{"name": "preference", "kind": "pairwise"}]})
}

struct Labelled {
    submission_id: String,
    item_id: String,
    assignment_id: String,
    responses: Vec<String>,
}

/// The caller's next task, or None when nothing is left.
async fn next(c: &Client, s: &Session, p: &str) -> Option<Value> {
    let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(s), None).await;
    if r.status == StatusCode::NO_CONTENT {
        return None;
    }
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    Some(r.json())
}

/// Labels the next task preferring the response that starts with `prefer`.
async fn label(c: &Client, s: &Session, p: &str, prefer: &str) -> Labelled {
    let t = next(c, s, p).await.expect("a task");
    let responses: Vec<String> = serde_json::from_value(t["responses"].clone()).unwrap();
    let choice = if responses[0].starts_with(prefer) { "a" } else { "b" };
    let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": format!("k-{}", t["assignment_id"]),
                      "answers": {"preference": {"choice": choice}}});
    let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(s), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    Labelled {
        submission_id: r.json()["submission_id"].as_str().unwrap().into(),
        item_id: t["item_id"].as_str().unwrap().into(),
        assignment_id: t["assignment_id"].as_str().unwrap().into(),
        responses,
    }
}

async fn revise(c: &Client, s: &Session, p: &str, sid: &str, action: &str, body: Value) -> (StatusCode, Value) {
    let r = c.call("POST", &format!("/api/projects/{p}/submissions/{sid}/{action}"), Auth::Cookie(s), Some(body)).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

async fn export(c: &Client, admin: &Session, p: &str, format: &str) -> Vec<Value> {
    let r = c.call("GET", &format!("/api/projects/{p}/export/{format}?part=all"), Auth::Cookie(admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The whole workflow on one backend.
async fn edits_and_reviews(url: &str) {
    let c = Client::new(state(url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "review", config(2, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(4)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let bob = c.annotator(&admin, &p, "bob").await;
    let rita = c.annotator(&admin, &p, "rita").await;
    let r = c
        .call("POST", &format!("/api/projects/{p}/reviewers"), Auth::Cookie(&rita), Some(json!({"username": "rita"})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only admins name reviewers: {}", r.text);
    let r = c
        .call("POST", &format!("/api/projects/{p}/reviewers"), Auth::Cookie(&admin), Some(json!({"username": "rita"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    // 16: ann labels, goes back, sees her answer in the positions she saw, and changes it.
    let first = label(&c, &ann, &p, "good").await;
    let mine = c.call("GET", &format!("/api/projects/{p}/mine"), Auth::Cookie(&ann), None).await.json();
    let entry = &mine["labels"][0];
    assert_eq!(entry["submission_id"], first.submission_id.as_str());
    let good_pos = if first.responses[0].starts_with("good") { "a" } else { "b" };
    let bad_pos = if good_pos == "a" { "b" } else { "a" };
    assert_eq!(entry["answer"]["preference"]["choice"], good_pos, "{entry}");
    assert_eq!(entry["editable"], true);
    let edit = json!({"answers": {"preference": {"choice": bad_pos}}, "idempotency_key": "edit-1"});
    let (st, v) = revise(&c, &ann, &p, &first.submission_id, "edit", edit.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = revise(&c, &ann, &p, &first.submission_id, "edit", edit.clone()).await;
    assert_eq!((st, &v["duplicate"]), (StatusCode::OK, &json!(true)), "a retried edit stores nothing: {v}");
    let pref = export(&c, &admin, &p, "preference").await;
    assert_eq!(pref.len(), 1);
    assert!(pref[0]["chosen"].as_str().unwrap().starts_with("bad"), "the export holds the edit: {pref:?}");
    let raw = export(&c, &admin, &p, "raw").await;
    assert_eq!(raw.len(), 1, "an edit adds no submission");
    assert_eq!(raw[0]["edited"], true);
    assert_ne!(raw[0]["answer"], raw[0]["effective_answer"], "raw keeps what was sent: {}", raw[0]);

    // Refusals: someone else's label, a non-reviewer's verdict, no CSRF token, an unknown action.
    let (st, _) = revise(&c, &bob, &p, &first.submission_id, "edit", edit.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "bob edits ann's label");
    let (st, _) = revise(&c, &bob, &p, &first.submission_id, "accept", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "bob is no reviewer");
    let r = c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&bob), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "bob reads the queue");
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/submissions/{}/accept", first.submission_id),
            Auth::CookieNoCsrf(&rita),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    let (st, _) = revise(&c, &rita, &p, &first.submission_id, "delete", json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The pages refuse the same people.
    for path in [
        format!("/p/{p}/mine/{}", first.submission_id),
        format!("/p/{p}/review"),
        format!("/p/{p}/review/{}", first.submission_id),
    ] {
        let r = c.call("GET", &path, Auth::Cookie(&bob), None).await;
        assert!(matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "bob opens {path}: {}", r.status);
    }
    let r = c.call("GET", &format!("/p/{p}/mine/{}", first.submission_id), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::OK, "ann opens her own label");
    assert!(r.text.contains("id=\"prefill\""), "the form carries her answer");
    let r = c.call("GET", &format!("/p/{p}/review"), Auth::Cookie(&rita), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // 17: rita accepts ann's label; ann can no longer change it.
    let (st, v) = revise(&c, &rita, &p, &first.submission_id, "accept", json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) =
        revise(&c, &ann, &p, &first.submission_id, "edit", json!({"answers": {"preference": {"choice": "a"}}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "edit after review: {v}");
    assert!(v["error"].as_str().unwrap().contains("accepted"), "{v}");
    let (st, _) = revise(&c, &rita, &p, &first.submission_id, "reject", json!({"reason": "late"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "a second verdict");

    // bob labels two items ("good" both times); rita corrects one and rejects the other.
    let b1 = label(&c, &bob, &p, "good").await;
    let b2 = label(&c, &bob, &p, "good").await;
    let (st, v) =
        revise(&c, &rita, &p, &b1.submission_id, "correct", json!({"answers": {"preference": {"choice": "b"}}})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = revise(&c, &rita, &p, &b2.submission_id, "reject", json!({})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a rejection needs a reason");
    let (st, v) =
        revise(&c, &rita, &p, &b2.submission_id, "reject", json!({"reason": "did not read the prompt"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let pref = export(&c, &admin, &p, "preference").await;
    let bobs: Vec<&Value> = pref.iter().filter(|r| r["annotator"] == "bob").collect();
    assert_eq!(bobs.len(), 1, "the rejected label is left out: {pref:?}");
    assert_eq!(bobs[0]["item_id"], b1.item_id.as_str());
    assert!(bobs[0]["chosen"].as_str().unwrap().starts_with("bad"), "the correction (item order: B = bad) wins");
    let mine = c.call("GET", &format!("/api/projects/{p}/mine"), Auth::Cookie(&bob), None).await.json();
    let rejected =
        mine["labels"].as_array().unwrap().iter().find(|l| l["submission_id"] == b2.submission_id.as_str()).unwrap();
    assert_eq!((&rejected["status"], &rejected["reason"]), (&json!("rejected"), &json!("did not read the prompt")));
    let stats = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await.json();
    assert_eq!(stats["labels"], 2, "stats count effective labels: {stats}");

    // The rejected item went back to the queue: with overlap 2 it lacks a label, so a third
    // annotator (who has not seen it) gets it.
    let carl = c.annotator(&admin, &p, "carl").await;
    let mut carl_items = vec![];
    while let Some(t) = next(&c, &carl, &p).await {
        carl_items.push(t["item_id"].as_str().unwrap().to_string());
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": format!("c-{}", t["assignment_id"]), "skip": "testing"});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&carl), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    assert!(carl_items.contains(&b2.item_id), "the rejected label's item is offered again: {carl_items:?}");

    // Flag vs skip: ann flags her task, then skips it; the queue lists it first with the note.
    let t = next(&c, &ann, &p).await.expect("a task for ann");
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/flags"),
            Auth::Cookie(&bob),
            Some(json!({"assignment_id": t["assignment_id"], "note": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "bob flags ann's assignment");
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/flags"),
            Auth::Cookie(&ann),
            Some(json!({"assignment_id": t["assignment_id"], "note": " "})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a flag needs a note");
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/flags"),
            Auth::Cookie(&ann),
            Some(json!({"assignment_id": t["assignment_id"], "note": "the prompt is cut off"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "ann-skip", "skip": "cannot judge"});
    let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&ann), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let q = c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&rita), None).await.json();
    let top = &q["labels"][0];
    assert_eq!(
        (&top["kind"], &top["flags"], &top["skip_reason"]),
        (&json!("skip"), &json!(["the prompt is cut off"]), &json!("cannot judge")),
        "{q}"
    );
    let reviewed: Vec<&str> =
        q["reviewed"].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(reviewed.len(), 3, "{reviewed:?}");

    // Adjudication (a project of one item, overlap 2): ann and bob disagree, 1-1 is a tie;
    // rita picks the final answer.
    let p = c.project(&admin, "adjudicate", config(2, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    for name in ["ann", "bob"] {
        let r = c
            .call("POST", &format!("/api/projects/{p}/members"), Auth::Cookie(&admin), Some(json!({"username": name})))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = c
        .call("POST", &format!("/api/projects/{p}/reviewers"), Auth::Cookie(&admin), Some(json!({"username": "rita"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let a = label(&c, &ann, &p, "good").await;
    label(&c, &bob, &p, "bad").await;
    let q = c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&rita), None).await.json();
    let d = q["disagreements"].as_array().unwrap().iter().find(|d| d["item_id"] == a.item_id.as_str()).cloned();
    let d = d.unwrap_or_else(|| panic!("the tie is listed for adjudication: {q}"));
    assert_eq!(d["choices"].as_array().unwrap().len(), 2, "{d}");
    let consensus = export(&c, &admin, &p, "consensus").await;
    assert!(!consensus.iter().any(|r| r["item_id"] == a.item_id.as_str()), "a tie waits for adjudication");
    let item = d["id"].as_str().unwrap();
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/items/{item}/adjudicate"),
            Auth::Cookie(&bob),
            Some(json!({"answers": {"preference": {"choice": "a"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "bob adjudicates");
    // Item order on the review page: response 0 ("good") is A.
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/items/{item}/adjudicate"),
            Auth::Cookie(&rita),
            Some(json!({"answers": {"preference": {"choice": "a"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let consensus = export(&c, &admin, &p, "consensus").await;
    let rec = consensus.iter().find(|r| r["item_id"] == a.item_id.as_str()).expect("the adjudicated item is exported");
    assert_eq!((&rec["source"], &rec["annotator"]), (&json!("adjudicated"), &json!("rita")));
    assert!(rec["chosen"].as_str().unwrap().starts_with("good"), "{rec}");
    let q = c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&rita), None).await.json();
    assert!(!q["disagreements"].as_array().unwrap().iter().any(|d| d["item_id"] == a.item_id.as_str()), "settled");
    // The admin reviews too.
    assert_eq!(
        c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&admin), None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn edits_and_reviews_sqlite() {
    let db = sqlite_db();
    edits_and_reviews(&db.url).await;
}

#[tokio::test]
async fn edits_and_reviews_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    edits_and_reviews(&db.url).await;
}

/// Only the 10 most recent labels can be changed: the 11th from the end is refused.
#[tokio::test]
async fn only_the_ten_most_recent_labels_can_be_changed() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "recent", config(1, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(11)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let mut done = vec![];
    for _ in 0..11 {
        done.push(label(&c, &ann, &p, "good").await);
    }
    let mine = c.call("GET", &format!("/api/projects/{p}/mine"), Auth::Cookie(&ann), None).await.json();
    assert_eq!(mine["labels"].as_array().unwrap().len(), 10);
    assert_eq!(mine["labels"][0]["submission_id"], done[10].submission_id.as_str(), "newest first");
    let change = json!({"answers": {"preference": {"choice": "a"}}});
    let (st, v) = revise(&c, &ann, &p, &done[0].submission_id, "edit", change.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("10 most recent"), "{v}");
    let (st, v) = revise(&c, &ann, &p, &done[1].submission_id, "edit", change).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // A bad answer is refused with the question named; a label of another project is not found.
    let (st, v) =
        revise(&c, &ann, &p, &done[2].submission_id, "edit", json!({"answers": {"preference": {"choice": "c"}}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let other = c.project(&admin, "other", config(1, 0.0)).await;
    let r = c
        .call("POST", &format!("/api/projects/{other}/members"), Auth::Cookie(&admin), Some(json!({"username": "ann"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (st, _) =
        revise(&c, &ann, &other, &done[3].submission_id, "edit", json!({"answers": {"preference": {"choice": "a"}}}))
            .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a label is changed only through its own project");
}

/// Gold feedback: after a gold item the annotator's recent labels say whether they matched
/// and what was expected, in the positions they saw; admins see gold accuracy per annotator.
#[tokio::test]
async fn gold_feedback_names_the_expected_answer() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "gold", config(1, 1.0)).await;
    c.import(
        &admin,
        &p,
        "{\"id\": \"g1\", \"prompt\": \"2+2?\", \"responses\": [\"4\", \"5\"], \"gold\": {\"preference\": 0}}\n",
    )
    .await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let got = label(&c, &ann, &p, "5").await;
    assert_eq!(got.item_id, "g1");
    let expected = if got.responses[0] == "4" { "preference: A better" } else { "preference: B better" };
    let mine = c.call("GET", &format!("/api/projects/{p}/mine"), Auth::Cookie(&ann), None).await.json();
    assert_eq!(mine["labels"][0]["gold"], json!({"matched": false, "expected": expected}), "{mine}");
    // Having seen the expected answer, ann cannot change hers (gold accuracy stays honest).
    assert_eq!(mine["labels"][0]["editable"], false);
    let fix = json!({"answers": {"preference": {"choice": if got.responses[0] == "4" { "a" } else { "b" }}}});
    let (st, v) = revise(&c, &ann, &p, &got.submission_id, "edit", fix).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let stats = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(&admin), None).await.json();
    assert_eq!(stats["annotators"][0]["gold_accuracy"], 0.0, "{stats}");
    // Without gold_feedback the annotator is told nothing.
    let quiet = c
        .project(&admin, "quiet", json!({"gold_rate": 1.0, "questions": [{"name": "preference", "kind": "pairwise"}]}))
        .await;
    c.import(
        &admin,
        &quiet,
        "{\"id\": \"g2\", \"prompt\": \"2+2?\", \"responses\": [\"4\", \"5\"], \"gold\": {\"preference\": 0}}\n",
    )
    .await;
    let r = c
        .call("POST", &format!("/api/projects/{quiet}/members"), Auth::Cookie(&admin), Some(json!({"username": "ann"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    label(&c, &ann, &quiet, "5").await;
    let mine = c.call("GET", &format!("/api/projects/{quiet}/mine"), Auth::Cookie(&ann), None).await.json();
    assert_eq!(mine["labels"][0]["gold"], Value::Null);
}

/// Every route of this feature refuses anonymous callers (401) and cookie writes without
/// the CSRF token (403), before anything is stored.
#[tokio::test]
async fn review_routes_need_a_session_and_csrf() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "auth", config(1, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let l = label(&c, &ann, &p, "good").await;
    let sid = &l.submission_id;
    let answers = json!({"answers": {"preference": {"choice": "a"}}});
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/projects/{p}/mine"), None),
        ("GET", format!("/api/projects/{p}/review"), None),
        ("POST", format!("/api/projects/{p}/flags"), Some(json!({"assignment_id": l.assignment_id, "note": "n"}))),
        ("POST", format!("/api/projects/{p}/submissions/{sid}/edit"), Some(answers.clone())),
        ("POST", format!("/api/projects/{p}/submissions/{sid}/accept"), Some(json!({}))),
        ("POST", format!("/api/projects/{p}/submissions/{sid}/correct"), Some(answers.clone())),
        ("POST", format!("/api/projects/{p}/submissions/{sid}/reject"), Some(json!({"reason": "r"}))),
        ("POST", format!("/api/projects/{p}/items/x/adjudicate"), Some(answers)),
        ("POST", format!("/api/projects/{p}/reviewers"), Some(json!({"username": "ann"}))),
    ];
    for (method, path, body) in &routes {
        let r = c.call(method, path, Auth::None, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous {method} {path}: {}", r.text);
        if *method == "POST" {
            for who in [&ann, &admin] {
                let r = c.call(method, path, Auth::CookieNoCsrf(who), body.clone()).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF {method} {path}: {}", r.text);
                assert!(r.text.contains("CSRF"), "{}", r.text);
            }
        }
    }
    // A member of another project is refused on every route (IDOR), with or without a real id.
    let q = c.project(&admin, "elsewhere", config(1, 0.0)).await;
    let eve = c.annotator(&admin, &q, "eve").await;
    for (method, path, body) in &routes {
        let r = c.call(method, path, Auth::Cookie(&eve), body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "outsider {method} {path}: {}", r.text);
        let fake = path.replace(sid.as_str(), "0123456789abcdef0123456789abcdef");
        let r = c.call(method, &fake, Auth::Cookie(&eve), body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "outsider {method} {fake}: {}", r.text);
    }
    // A reviewer does not review their own label.
    let r = c
        .call("POST", &format!("/api/projects/{p}/reviewers"), Auth::Cookie(&admin), Some(json!({"username": "ann"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (st, v) = revise(&c, &ann, &p, sid, "accept", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let raw = export(&c, &admin, &p, "raw").await;
    assert_eq!((raw.len(), &raw[0]["review"], &raw[0]["edited"]), (1, &json!("pending"), &json!(false)));
    assert!(c.call("GET", &format!("/api/projects/{p}/review"), Auth::Cookie(&admin), None).await.json()["labels"][0]
        ["flags"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// Prompts, flag notes and reasons are shown as text on the new pages, never as markup.
#[tokio::test]
async fn hostile_text_is_escaped_on_review_pages() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "xss", config(2, 0.0)).await;
    let evil = json!({"id": "<b>e</b>", "prompt": "<script>alert('p')</script>", "responses": ["good <img src=x onerror=alert(1)>", "bad '\"><svg onload=alert(2)>"]});
    c.import(&admin, &p, &format!("{evil}\n")).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let bob = c.annotator(&admin, &p, "bob").await;
    let t = next(&c, &ann, &p).await.unwrap();
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/flags"),
            Auth::Cookie(&ann),
            Some(json!({"assignment_id": t["assignment_id"], "note": "<img src=y onerror=alert(3)>"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "a", "answers": {"preference": {"choice": "a"}}});
    assert_eq!(
        c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&ann), Some(body)).await.status,
        StatusCode::CREATED
    );
    label(&c, &bob, &p, "bad").await;
    for (path, who) in [(format!("/p/{p}/review"), &admin), (format!("/p/{p}/mine"), &ann)] {
        let r = c.call("GET", &path, Auth::Cookie(who), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let html = r.text;
        for raw in ["<img", "<svg", "<b>e", "<script>alert"] {
            assert!(!html.contains(raw), "{path} shows raw {raw}: {html}");
        }
        for tag in html.split("<script").skip(1) {
            assert!(tag.starts_with(" src=\"/static/"), "{path}: {html}");
        }
        if path.ends_with("/review") {
            assert!(html.contains("<h4>Response A</h4>") && html.contains("<h4>Response B</h4>"), "{html}");
        }
    }
}

/// Two reviewers judge the same label at once: both pass the API's "not reviewed yet"
/// check, so the database itself must keep one verdict per label. The second is refused
/// and the label stays as the first verdict left it (accepted, its slot still taken).
async fn one_verdict_per_label(url: &str) {
    let st = state(url, ServerConfig::default()).await;
    let db = st.db.clone();
    let c = Client::new(st);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "verdicts", config(1, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let l = label(&c, &ann, &p, "good").await;
    let reviewer = db.user_by_name("admin").await.unwrap().unwrap();
    let verdict = |id: &str, action: &str| reins_feedback::db::Revision {
        id: id.into(),
        project_id: p.clone(),
        submission_id: l.submission_id.clone(),
        user_id: reviewer.id.clone(),
        action: action.into(),
        answer: None,
        note: (action == "reject").then(|| "late".to_string()),
        created_at: 1,
    };
    db.insert_revision(&verdict("v1", "accept"), None).await.expect("the first verdict is stored");
    let second = db.insert_revision(&verdict("v2", "reject"), None).await;
    assert!(second.is_err(), "a second verdict on one label was stored: {second:?}");
    let raw = export(&c, &admin, &p, "raw").await;
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert_eq!(raw[0]["review"], "accepted", "{raw:?}");
    let rows = export(&c, &admin, &p, "preference").await;
    assert_eq!(rows.len(), 1, "the accepted label is still exported: {rows:?}");
    assert_eq!(next(&c, &ann, &p).await, None, "the item's slot is still taken by the accepted label");
}

#[tokio::test]
async fn one_verdict_per_label_sqlite() {
    let db = sqlite_db();
    one_verdict_per_label(&db.url).await;
}

#[tokio::test]
async fn one_verdict_per_label_postgres() {
    let Some(db) = postgres_db().await else {
        return;
    };
    one_verdict_per_label(&db.url).await;
}

/// Hostile and concurrent: two reviewers fire six verdicts (accepts and rejects) at one label
/// at the same moment. Exactly one is stored; every other answer is a refusal (409 or 4xx),
/// never a second stored verdict, and the export shows the one that won.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verdicts_on_one_label_store_exactly_one() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "race", config(1, 0.0)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let rita = c.annotator(&admin, &p, "rita").await;
    let r = c
        .call("POST", &format!("/api/projects/{p}/reviewers"), Auth::Cookie(&admin), Some(json!({"username": "rita"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let l = label(&c, &ann, &p, "good").await;
    let sid = l.submission_id.as_str();
    let reject = json!({"note": "late"});
    let (a, b, c1, d, e, f) = tokio::join!(
        revise(&c, &admin, &p, sid, "accept", json!({})),
        revise(&c, &rita, &p, sid, "reject", reject.clone()),
        revise(&c, &admin, &p, sid, "reject", reject.clone()),
        revise(&c, &rita, &p, sid, "accept", json!({})),
        revise(&c, &admin, &p, sid, "accept", json!({})),
        revise(&c, &rita, &p, sid, "reject", reject.clone()),
    );
    let all = [a, b, c1, d, e, f];
    let stored: Vec<_> = all.iter().filter(|(st, _)| st.is_success()).collect();
    assert_eq!(stored.len(), 1, "exactly one verdict is stored: {all:?}");
    for (st, v) in &all {
        assert!(st.is_success() || st.is_client_error(), "a refusal, not a server error: {st} {v}");
    }
    let raw = export(&c, &admin, &p, "raw").await;
    let won = if stored[0].1.to_string().contains("reject") { "rejected" } else { "accepted" };
    assert_eq!(raw[0]["review"], won, "the export shows the verdict that was stored: {raw:?} {stored:?}");
}
