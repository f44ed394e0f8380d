//! Model suggestions (import, pre-fill data, kept-or-changed per submission, exports with
//! the person's answers only), item search and filters, read-only item previews, strict
//! question keys, and admin `next` as a preview. In process, on SQLite, and on PostgreSQL
//! when `REINS_TEST_POSTGRES_URL` is set.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::{json, Value};

fn config() -> Value {
    json!({"overlap": 1, "gold_rate": 0.0, "questions": [
        {"name": "preference", "kind": "pairwise", "strength": true},
        {"name": "ok", "kind": "thumbs"}]})
}

#[tokio::test]
async fn a_typo_in_a_question_key_is_refused_naming_the_key() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let cfg = json!({"questions": [{"name": "note", "kind": "critique", "optinal": true}]});
    let r = c.call("POST", "/api/projects", Auth::Cookie(&admin), Some(json!({"name": "x", "config": cfg}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let e = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(e.contains("unknown key `optinal`") && e.contains("rewrite"), "{e}");
}

/// `GET /next` claims only for members: an admin outside the project gets a preview and
/// the item stays free for the annotator; once a member, the admin claims like anyone.
#[tokio::test]
async fn admin_next_is_a_preview_unless_the_admin_is_a_member() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let next = format!("/api/projects/{p}/next");
    let r = c.call("GET", &next, Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.json()["preview"].clone(), r.json()["assignment_id"].clone()), (json!(true), Value::Null));
    let ann = c.annotator(&admin, &p, "ann").await;
    let first = c.call("GET", &next, Auth::Cookie(&ann), None).await;
    assert_eq!(first.status, StatusCode::OK, "the admin's look held the only item back: {}", first.text);
    assert_eq!(first.json()["item_id"], "item-0");
    c.import(&admin, &p, &items_jsonl(2)).await;
    let r = c
        .call("POST", &format!("/api/projects/{p}/members"), Auth::Cookie(&admin), Some(json!({"username": "admin"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = c.call("GET", &next, Auth::Cookie(&admin), None).await.json();
    assert!(r["assignment_id"].is_string() && r.get("preview").is_none(), "a member claims: {r}");
    assert_eq!(r["item_id"], "item-1");
}

#[tokio::test]
async fn bad_suggestions_are_reported_by_line_and_question() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "x", config()).await;
    let lines = [
        json!({"prompt": "p1", "responses": ["a", "b"], "suggestions": {"preference": {"choice": "a"}}, "suggestion_source": "rm-v1"}),
        json!({"prompt": "p2", "responses": ["a", "b"], "suggestions": {"prefernce": {"choice": "a"}}}),
        json!({"prompt": "p3", "responses": ["a", "b"], "suggestions": {"ok": [true]}}),
        json!({"prompt": "p4", "responses": ["a", "b"], "suggestion_source": "rm-v1"}),
        json!({"prompt": "p5", "completion": "a", "suggestions": {"ok": [true]}}),
    ];
    let jsonl: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let report = c.import(&admin, &p, &jsonl).await;
    assert_eq!(report["imported"], 1, "{report}");
    // Re-importing an item with suggestions it lacked adds them; one that has some keeps its own.
    let again = [
        json!({"prompt": "p6", "responses": ["a", "b"]}),
        json!({"prompt": "p6", "responses": ["a", "b"], "suggestions": {"ok": [true, true]}, "suggestion_source": "judge"}),
        json!({"prompt": "p1", "responses": ["a", "b"], "suggestions": {"ok": [false, false]}, "suggestion_source": "other"}),
    ];
    for line in again {
        c.import(&admin, &p, &(line.to_string() + "\n")).await;
    }
    let (_, found) = ids(&c, &admin, &p, "suggested=true").await;
    let sources: Vec<(&str, &str)> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["prompt"].as_str().unwrap(), i["suggestion_source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("p1", "rm-v1"), ("p6", "judge")]);
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["message"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 3, 4, 5], "{errors:?}");
    assert!(
        errors[0].1.contains("unknown question `prefernce`") && errors[0].1.contains("preference, ok"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("suggestion for `ok`") && errors[1].1.contains("one per response"), "{errors:?}");
    assert!(errors[2].1.contains("without `suggestions`"), "{errors:?}");
    assert!(errors[3].1.contains("all responses on one line"), "{errors:?}");
}

/// The display position of the item's response `text` in a task.
fn shown_at(task: &Value, text: &str) -> usize {
    task["responses"].as_array().unwrap().iter().position(|r| r == text).unwrap()
}

async fn suggestions_kept_or_changed(url: &str) {
    let c = Client::new(state(url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "suggested", config()).await;
    let jsonl: String = (0..2)
        .map(|i| json!({"id": format!("s{i}"), "prompt": format!("p{i}"), "responses": [format!("first {i}"), format!("second {i}")],
                        "suggestions": {"preference": {"choice": "a", "strength": 2}, "ok": [true, false]}, "suggestion_source": "rm-v1"}).to_string() + "\n")
        .collect();
    assert_eq!(c.import(&admin, &p, &jsonl).await["imported"], 2);
    let ann = c.annotator(&admin, &p, "ann").await;
    // Item s0: both suggestions kept. Item s1: the preference changed to the second response.
    for _ in 0..2 {
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await.json();
        let i = if t["item_id"] == "s0" { 0 } else { 1 };
        let keep = i == 0;
        let first = shown_at(&t, &format!("first {i}"));
        let winner = if keep { first } else { 1 - first };
        let mut ok = [false, false];
        ok[first] = true;
        let choice = ["a", "b"][winner];
        assert_eq!(t["suggestion_source"], "rm-v1");
        assert_eq!(t["suggestions"]["ok"], json!(ok), "suggestions in display positions");
        // Kept: the suggestions as `next` shows them are sent back unchanged.
        let answers = if keep {
            t["suggestions"].clone()
        } else {
            json!({"preference": {"choice": choice, "strength": 2}, "ok": ok})
        };
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": format!("k{i}"), "answers": answers});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&ann), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let found = c.call("GET", &format!("/api/projects/{p}/items"), Auth::Cookie(&admin), None).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    let found = found.json();
    assert_eq!(
        found["suggestion_acceptance"],
        json!({"preference": {"kept": 1, "changed": 1}, "ok": {"kept": 2, "changed": 0}})
    );
    assert_eq!(found["items"][0]["suggestion_source"], "rm-v1");
    // Exports hold the person's answers: item s1's chosen response is the one they picked.
    let r = c.call("GET", &format!("/api/projects/{p}/export/preference?part=all"), Auth::Cookie(&admin), None).await;
    let mut chosen: Vec<(String, String)> = r
        .text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["item_id"].as_str().unwrap().into(), v["chosen"].as_str().unwrap().into()))
        .collect();
    chosen.sort();
    assert_eq!(chosen, [("s0".into(), "first 0".into()), ("s1".into(), "second 1".into())]);
    let raw = c.call("GET", &format!("/api/projects/{p}/export/raw?part=all"), Auth::Cookie(&admin), None).await;
    assert!(!raw.text.contains("suggest") && !raw.text.contains("rm-v1"), "{}", raw.text);
}

#[tokio::test]
async fn suggestions_kept_or_changed_sqlite() {
    let db = sqlite_db();
    suggestions_kept_or_changed(&db.url).await;
}

#[tokio::test]
async fn suggestions_kept_or_changed_postgres() {
    let Some(db) = postgres_db().await else { return };
    suggestions_kept_or_changed(&db.url).await;
}

async fn ids(c: &Client, admin: &Session, p: &str, query: &str) -> (Vec<String>, Value) {
    let r = c.call("GET", &format!("/api/projects/{p}/items?{query}"), Auth::Cookie(admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    let v = r.json();
    let ids = v["items"].as_array().unwrap().iter().map(|i| i["external_id"].as_str().unwrap().to_string()).collect();
    (ids, v)
}

async fn search_and_filters(url: &str) {
    let c = Client::new(state(url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "search", pairwise_config(1)).await;
    let mut jsonl = items_jsonl(3);
    jsonl.push_str(
        &(json!({"id": "odd", "prompt": "costs 50% more", "responses": ["has a Needle \"quoted\"", "x"]}).to_string()
            + "\n"),
    );
    jsonl.push_str(
        &(json!({"id": "sugg", "prompt": "p", "responses": ["a", "b"], "suggestions": {"preference": {"choice": "b"}}})
            .to_string() + "\n"),
    );
    c.import(&admin, &p, &jsonl).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    // ann labels one item and holds a claim on another (assignment picks them at random).
    let mut taken = vec![];
    for i in 0..2 {
        let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await.json();
        taken.push(t["item_id"].as_str().unwrap().to_string());
        if i == 0 {
            let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": {"preference": {"choice": "a"}}});
            let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&ann), Some(body)).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
    }
    let all = ["item-0", "item-1", "item-2", "odd", "sugg"];
    let unlabeled: Vec<&str> = all.into_iter().filter(|i| !taken.iter().any(|t| t == i)).collect();
    assert_eq!(ids(&c, &admin, &p, "").await.0, all);
    assert_eq!(ids(&c, &admin, &p, "q=needle").await.0, ["odd"], "responses, any case");
    assert_eq!(ids(&c, &admin, &p, "q=NEEDLE%20%22quoted").await.0, ["odd"], "quotes inside responses");
    assert_eq!(ids(&c, &admin, &p, "q=50%25").await.0, ["odd"], "% is a character, not a wildcard");
    assert_eq!(ids(&c, &admin, &p, "q=prompt%201").await.0, ["item-1"], "prompt");
    assert_eq!(ids(&c, &admin, &p, "q=sug").await.0, ["sugg"], "external id");
    assert_eq!(ids(&c, &admin, &p, "status=complete").await.0, [taken[0].clone()]);
    assert_eq!(ids(&c, &admin, &p, "status=in_progress").await.0, [taken[1].clone()], "a live claim");
    assert_eq!(ids(&c, &admin, &p, "status=unlabeled").await.0, unlabeled);
    assert_eq!(ids(&c, &admin, &p, "annotator=ANN").await.0, [taken[0].clone()]);
    assert_eq!(ids(&c, &admin, &p, "suggested=true").await.0, ["sugg"]);
    assert_eq!(ids(&c, &admin, &p, "suggested=false&q=item").await.0, ["item-0", "item-1", "item-2"]);
    let (page, v) = ids(&c, &admin, &p, "per_page=2&page=2").await;
    assert_eq!(page, ["item-2", "odd"]);
    assert_eq!((v["total"].clone(), v["pages"].clone()), (json!(5), json!(3)));
    let row = &ids(&c, &admin, &p, "status=complete").await.1["items"][0];
    assert_eq!((row["status"].clone(), row["annotators"].clone()), (json!("complete"), json!(["ann"])));

    for (query, status, says) in [
        ("per_page=500", StatusCode::BAD_REQUEST, "1 to 200"),
        ("page=0", StatusCode::BAD_REQUEST, "from 1"),
        ("status=done", StatusCode::BAD_REQUEST, "unlabeled, in_progress, complete"),
        ("sort=id", StatusCode::BAD_REQUEST, "unknown query parameter `sort`"),
        ("annotator=nobody", StatusCode::NOT_FOUND, "no user `nobody`"),
    ] {
        let r = c.call("GET", &format!("/api/projects/{p}/items?{query}"), Auth::Cookie(&admin), None).await;
        assert_eq!(r.status, status, "{query}: {}", r.text);
        assert!(r.json()["error"].as_str().unwrap_or_default().contains(says), "{query}: {}", r.text);
    }
    let r = c.call("GET", &format!("/api/projects/{p}/items"), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "annotators do not search items: {}", r.text);
    let r = c.call("GET", &format!("/p/{p}/items"), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "nor open the items page");
    let r = c.call("GET", &format!("/api/projects/{p}/items"), Auth::None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = c.call("GET", &format!("/p/{p}/items?q=x"), Auth::None, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "signed out: to the login form");
    assert!(r.headers["location"].to_str().unwrap().starts_with("/login?next="), "{:?}", r.headers);
}

#[tokio::test]
async fn search_and_filters_sqlite() {
    let db = sqlite_db();
    search_and_filters(&db.url).await;
}

#[tokio::test]
async fn search_and_filters_postgres() {
    let Some(db) = postgres_db().await else { return };
    search_and_filters(&db.url).await;
}

/// The items page and an item's preview escape what they show, and previewing claims nothing.
#[tokio::test]
async fn items_page_escapes_and_previews_claim_nothing() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "pages", pairwise_config(1)).await;
    let evil = "<script>alert(1)</script>";
    let jsonl = json!({"id": "<b>x</b>", "prompt": evil, "responses": [evil, "b"], "suggestions": {"preference": {"choice": "a"}}, "suggestion_source": evil}).to_string() + "\n";
    c.import(&admin, &p, &jsonl).await;
    let page = c.call("GET", &format!("/p/{p}/items?q=%3Cscript"), Auth::Cookie(&admin), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("&lt;script&gt;alert(1)") && !page.text.contains(evil), "{}", page.text);
    assert!(!page.text.contains("<b>x</b>"), "{}", page.text);
    let id = ids(&c, &admin, &p, "").await.1["items"][0]["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let preview = c.call("GET", &format!("/p/{p}/items/{id}"), Auth::Cookie(&admin), None).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert!(preview.text.contains("Preview: read-only") && !preview.text.contains(evil), "{}", preview.text);
    }
    assert_eq!(ids(&c, &admin, &p, "status=unlabeled").await.0, ["<b>x</b>"], "a preview claimed the item");
    // The admin's preview of the label page names the suggestion without claiming to have filled it in.
    let label = c.call("GET", &format!("/p/{p}"), Auth::Cookie(&admin), None).await;
    assert!(label.text.contains("(pre-filled for annotators)") && !label.text.contains(evil), "{}", label.text);
    let ann = c.annotator(&admin, &p, "ann").await;
    let r = c.call("GET", &format!("/p/{p}/items/{id}"), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await;
    assert_eq!(t.status, StatusCode::OK, "the item is still free: {}", t.text);
    let other = c.project(&admin, "other", pairwise_config(1)).await;
    let r = c.call("GET", &format!("/p/{other}/items/{id}"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "an item is previewed only under its own project");
}
