//! Item search and the review feature as one product, through the JSON API and the pages on
//! SQLite, and on PostgreSQL when `REINS_TEST_POSTGRES_URL` is set: the `flagged` filter and
//! flags count, rejected labels left out of the status filter, the item preview showing each
//! label's review state and effective answer, flags and the adjudicated answer, and the
//! stats' per-item consensus taking the adjudicated answer as the `consensus` export does.
mod common;
use axum::http::StatusCode;
use common::*;
use reins_feedback::ServerConfig;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Labels every task left for `s`; `prefer(item)` names the start of the preferred response.
/// Returns (external item id, submission id, assignment id) in labelling order.
async fn label_all(
    c: &Client,
    s: &Session,
    p: &str,
    prefer: impl Fn(&str) -> &'static str,
) -> Vec<(String, String, String)> {
    let mut out = vec![];
    loop {
        let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(s), None).await;
        if r.status == StatusCode::NO_CONTENT {
            return out;
        }
        let t = r.json();
        let item = t["item_id"].as_str().unwrap().to_string();
        let choice = if t["responses"][0].as_str().unwrap().starts_with(prefer(&item)) { "a" } else { "b" };
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": t["assignment_id"],
                          "answers": {"preference": {"choice": choice}}});
        let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(s), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        out.push((
            item,
            r.json()["submission_id"].as_str().unwrap().into(),
            t["assignment_id"].as_str().unwrap().into(),
        ));
    }
}

/// (external ids in import order, the whole answer) of an item search.
async fn search(c: &Client, admin: &Session, p: &str, query: &str) -> (Vec<String>, Value) {
    let r = c.call("GET", &format!("/api/projects/{p}/items?{query}"), Auth::Cookie(admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    let v = r.json();
    let ids = v["items"].as_array().unwrap().iter().map(|i| i["external_id"].as_str().unwrap().to_string()).collect();
    (ids, v)
}

async fn revise(c: &Client, admin: &Session, p: &str, sid: &str, action: &str, body: Value) {
    let r =
        c.call("POST", &format!("/api/projects/{p}/submissions/{sid}/{action}"), Auth::Cookie(admin), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{action}: {}", r.text);
}

/// The per-item consensus of the stats, by external item id.
async fn stats_consensus(c: &Client, admin: &Session, p: &str) -> HashMap<String, Value> {
    let r = c.call("GET", &format!("/api/projects/{p}/stats"), Auth::Cookie(admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    v["consensus"].as_array().unwrap().iter().map(|c| (c["item_id"].as_str().unwrap().to_string(), c.clone())).collect()
}

async fn review_and_search(url: &str) {
    let c = Client::new(state(url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "join", pairwise_config(2)).await;
    c.import(&admin, &p, &items_jsonl(3)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let bob = c.annotator(&admin, &p, "bob").await;

    // ann flags the first task in front of her, then labels everything "good".
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await.json();
    let flagged = t["item_id"].as_str().unwrap().to_string();
    let body = json!({"assignment_id": t["assignment_id"], "note": "response B is cut off"});
    let r = c.call("POST", &format!("/api/projects/{p}/flags"), Auth::Cookie(&ann), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let ann_labels = label_all(&c, &ann, &p, |_| "good").await;
    // bob disagrees on the flagged item only.
    let x = flagged.clone();
    let bob_labels = label_all(&c, &bob, &p, move |item| if item == x { "bad" } else { "good" }).await;
    assert_eq!((ann_labels.len(), bob_labels.len()), (3, 3));
    let sub = |labels: &[(String, String, String)], item: &str| {
        labels.iter().find(|l| l.0 == item).map(|l| l.1.clone()).unwrap()
    };
    let (ids, all) = search(&c, &admin, &p, "").await;
    let others: Vec<String> = ids.iter().filter(|i| **i != flagged).cloned().collect();
    let (y, z) = (others[0].clone(), others[1].clone());
    let internal: HashMap<String, String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["external_id"].as_str().unwrap().into(), i["id"].as_str().unwrap().into()))
        .collect();

    // 1. The flagged filter and the flags count.
    let (found, v) = search(&c, &admin, &p, "flagged=true").await;
    assert_eq!(found, vec![flagged.clone()]);
    assert_eq!(v["items"][0]["flags"], 1, "{v}");
    let (found, v) = search(&c, &admin, &p, "flagged=false").await;
    assert_eq!(found, others);
    assert_eq!(v["items"][0]["flags"], 0, "{v}");
    assert_eq!(search(&c, &admin, &p, "flagged=true&status=complete").await.0, vec![flagged.clone()]);
    let r = c.call("GET", &format!("/api/projects/{p}/items?flagged=maybe"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("`flagged` is true or false"), "{}", r.text);
    let r = c.call("GET", &format!("/api/projects/{p}/items?flagged=true"), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "annotators do not search items");
    // The items page: the select keeps its value, the row shows the count.
    let page = c.call("GET", &format!("/p/{p}/items?flagged=true"), Auth::Cookie(&admin), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("<option value=\"true\" selected>flagged</option>"), "{}", page.text);
    assert!(page.text.contains("<td data-label=\"flags\" class=\"item-flags\">1</td>"), "{}", page.text);
    assert!(!page.text.contains(&format!(">{y}</a>")), "an unflagged item is listed");

    // Rejected labels are not labels: Y loses one (in progress), then both (unlabeled).
    assert_eq!(search(&c, &admin, &p, "status=complete").await.0, ids);
    revise(&c, &admin, &p, &sub(&bob_labels, &y), "reject", json!({"reason": "did not read B"})).await;
    let (found, v) = search(&c, &admin, &p, "status=in_progress").await;
    assert_eq!(found, vec![y.clone()]);
    assert_eq!((v["items"][0]["labels"].clone(), v["items"][0]["status"].clone()), (json!(1), json!("in_progress")));
    assert!(!search(&c, &admin, &p, "status=complete").await.0.contains(&y));
    revise(&c, &admin, &p, &sub(&ann_labels, &y), "reject", json!({"reason": "guessed"})).await;
    assert_eq!(search(&c, &admin, &p, "status=unlabeled").await.0, vec![y.clone()]);
    assert_eq!(search(&c, &admin, &p, "status=in_progress").await.0, Vec::<String>::new());
    let (by_bob, v) = search(&c, &admin, &p, "annotator=bob").await;
    assert!(!by_bob.contains(&y) && by_bob.len() == 2, "a rejected label is not bob's label: {by_bob:?}");
    assert!(v["items"].as_array().unwrap().iter().all(|i| i["annotators"] == json!(["ann", "bob"])), "{v}");

    // 3. The stats' consensus: the flagged item is a 1-1 tie until adjudicated, then the
    // adjudicated answer (bad, response 2), as in the consensus export.
    let cons = stats_consensus(&c, &admin, &p).await;
    let x = &cons[&flagged];
    assert_eq!(
        (x["source"].clone(), x["consensus"]["preference"]["tie"].clone()),
        (json!("majority"), json!(true)),
        "{x}"
    );
    assert!(x["consensus"]["preference"]["majority"].is_null(), "{x}");
    assert!(!cons.contains_key(&y), "an item whose labels were all rejected has no consensus: {cons:?}");
    let r = c
        .call(
            "POST",
            &format!("/api/projects/{p}/items/{}/adjudicate", internal[&flagged]),
            Auth::Cookie(&admin),
            Some(json!({"answers": {"preference": {"choice": "b"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let cons = stats_consensus(&c, &admin, &p).await;
    let x = &cons[&flagged];
    assert_eq!(x["source"], "adjudicated", "{x}");
    assert_eq!(x["adjudicated_by"], "admin", "{x}");
    let pref = &x["consensus"]["preference"];
    assert_eq!(
        (pref["majority"].clone(), pref["tie"].clone(), pref["share"].clone()),
        (json!("1"), json!(false), json!(0.5)),
        "{x}"
    );
    assert_eq!(
        (cons[&z]["source"].clone(), cons[&z]["consensus"]["preference"]["majority"].clone()),
        (json!("majority"), json!("0"))
    );
    let r = c.call("GET", &format!("/api/projects/{p}/export/consensus?part=all"), Auth::Cookie(&admin), None).await;
    let exported: Vec<Value> = r.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rec = exported.iter().find(|r| r["item_id"] == flagged.as_str()).expect("the adjudicated item is exported");
    assert_eq!(
        (rec["source"].clone(), rec["answer"]["preference"]["winner"].clone()),
        (json!("adjudicated"), json!(1))
    );
    // The dashboard renders with an adjudicated item.
    let r = c.call("GET", &format!("/p/{p}/dashboard"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // 2. The preview shows review states and effective answers. On Z: ann edits her label to
    // "bad" and it is accepted; bob's is corrected to "bad".
    let ann_z = sub(&ann_labels, &z);
    let mine = c.call("GET", &format!("/api/projects/{p}/mine"), Auth::Cookie(&ann), None).await.json();
    let entry =
        mine["labels"].as_array().unwrap().iter().find(|l| l["submission_id"] == ann_z.as_str()).unwrap().clone();
    let good_shown = entry["answer"]["preference"]["choice"].as_str().unwrap();
    let bad_shown = if good_shown == "a" { "b" } else { "a" };
    let edit = json!({"answers": {"preference": {"choice": bad_shown}}});
    let r =
        c.call("POST", &format!("/api/projects/{p}/submissions/{ann_z}/edit"), Auth::Cookie(&ann), Some(edit)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    revise(&c, &admin, &p, &ann_z, "accept", json!({})).await;
    revise(&c, &admin, &p, &sub(&bob_labels, &z), "correct", json!({"answers": {"preference": {"choice": "b"}}})).await;
    let path = |item: &str| format!("/p/{p}/items/{}", internal[item]);
    let r = c.call("GET", &path(&z), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rows: Vec<&str> = r.text.split("<tr data-verdict=").skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", r.text);
    assert!(
        rows[0].starts_with("\"accepted\"") && rows[0].contains("accepted by admin · edited by the annotator"),
        "{}",
        rows[0]
    );
    assert!(rows[0].contains("preference: B better"), "the effective answer is the edit: {}", rows[0]);
    assert!(rows[1].contains("corrected by admin") && rows[1].contains("preference: B better"), "{}", rows[1]);
    assert!(!r.text.contains("id=\"adjudication\"") && !r.text.contains("id=\"flags\""), "nothing to show");
    let r = c.call("GET", &path(&y), Auth::Cookie(&admin), None).await;
    assert!(
        r.text.contains("rejected by admin: did not read B") && r.text.contains("rejected by admin: guessed"),
        "{}",
        r.text
    );
    assert_eq!(r.text.matches("none (rejected)").count(), 2, "a rejected label has no effective answer: {}", r.text);
    let r = c.call("GET", &path(&flagged), Auth::Cookie(&admin), None).await;
    assert!(r.text.contains("not reviewed"), "{}", r.text);
    assert!(
        r.text.contains("<li><strong>ann</strong>: response B is cut off</li>"),
        "the flag and its note: {}",
        r.text
    );
    assert!(r.text.contains("By admin: <span class=\"adjudicated\">preference: B better</span>."), "{}", r.text);
}

#[tokio::test]
async fn review_and_search_sqlite() {
    let db = sqlite_db();
    review_and_search(&db.url).await;
}

#[tokio::test]
async fn review_and_search_postgres() {
    let Some(db) = postgres_db().await else { return };
    review_and_search(&db.url).await;
}

/// A flag's note and a rejection's reason are escaped on the preview.
#[tokio::test]
async fn preview_escapes_notes_and_reasons() {
    let db = sqlite_db();
    let c = Client::new(state(&db.url, ServerConfig::default()).await);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    let p = c.project(&admin, "escape", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let evil = "<script>alert(1)</script>";
    let t = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await.json();
    let body = json!({"assignment_id": t["assignment_id"], "note": evil});
    let r = c.call("POST", &format!("/api/projects/{p}/flags"), Auth::Cookie(&ann), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let labels = label_all(&c, &ann, &p, |_| "good").await;
    revise(&c, &admin, &p, &labels[0].1, "reject", json!({"reason": evil})).await;
    let (_, v) = search(&c, &admin, &p, "flagged=true").await;
    let r = c.call("GET", v["items"][0]["preview"].as_str().unwrap(), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains(evil) && r.text.contains("&lt;script&gt;"), "{}", r.text);
}
