//! Item search and review as one product in a real browser: the admin filters the items
//! page by "flagged", opens the flagged item's preview and reads each label's review state
//! and effective answer, the flag's note and the adjudicated answer; nothing overflows at
//! 390 px. Writes docs/img/feedback-item-preview-1280.png. Skipped without Chromium.
mod common;
use common::browser::*;
use common::*;
use reins_feedback::db::{now_ms, random_token, Adjudication, Revision};
use reins_feedback::{Role, ServerConfig};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_filters_flagged_items_and_previews_their_review() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "helpful", &pairwise_config(2)).await.unwrap();
    let prompts = ["Explain photosynthesis to a child.", "Write a haiku about autumn rain.", "Name a bread bakery."];
    let jsonl: String = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            json!({"id": format!("q{i}"), "prompt": prompt, "responses": [format!("answer one to {i}"), format!("answer two to {i}")]})
                .to_string()
                + "\n"
        })
        .collect();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &jsonl).await.unwrap();
    for name in ["ann", "bob"] {
        let u = reins_feedback::create_user(&st.db, name, "annotator-pw", Role::Annotator).await.unwrap();
        st.db.add_member(&p.id, &u.id).await.unwrap();
    }
    let dbh = st.db.clone();
    let server = spawn_server(st).await;
    for name in ["ann", "bob"] {
        label_via_api(&server, &p.id, name, 3, json!({"preference": {"choice": "a", "strength": 2}}), 2000).await;
    }
    // On q0: ann flagged her task and her label is accepted, bob's is rejected, and the
    // reviewer adjudicated the item (response 1 better).
    let admin = dbh.user_by_name("admin").await.unwrap().unwrap();
    let users = dbh.usernames().await.unwrap();
    let q0 = dbh.items(&p.id).await.unwrap().into_iter().find(|i| i.external_id == "q0").unwrap();
    let subs: Vec<_> = dbh.submissions(&p.id).await.unwrap().into_iter().filter(|s| s.item_id == q0.id).collect();
    let by = |name: &str| subs.iter().find(|s| users[&s.user_id] == name).unwrap().clone();
    let (ann, bob) = (by("ann"), by("bob"));
    dbh.insert_flag(&p.id, &ann.assignment_id, &ann.user_id, "Response B is cut off").await.unwrap();
    for (s, action, note) in [(&ann, "accept", None), (&bob, "reject", Some("answered without reading"))] {
        let r = Revision {
            id: random_token(),
            project_id: p.id.clone(),
            submission_id: s.id.clone(),
            user_id: admin.id.clone(),
            action: action.into(),
            answer: None,
            note: note.map(String::from),
            created_at: now_ms(),
        };
        dbh.insert_revision(&r, None).await.unwrap();
    }
    let answer = json!({"preference": {"outcome": "win", "winner": 0, "loser": 1, "strength": 3}});
    let adj = Adjudication {
        id: random_token(),
        project_id: p.id.clone(),
        item_id: q0.id.clone(),
        user_id: admin.id.clone(),
        answer,
        created_at: now_ms(),
    };
    dbh.insert_adjudication(&adj).await.unwrap();

    let rows =
        "return Array.from(document.querySelectorAll('#items tbody tr')).map((r) => r.querySelector('td').innerText)";
    let labels = "return Array.from(document.querySelectorAll('#labels tbody tr')).map((r) => \
                  [r.cells[0].innerText, r.querySelector('.review-state').innerText, r.querySelector('.effective').innerText])";
    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.goto(&format!("http://{server}/p/{}/items", p.id)).await;
        let label = d.js("return document.querySelector('label[for=item-flagged]').innerText").await;
        if label != json!("Flags") {
            problems.push(format!("the flags select is labelled {label}"));
        }
        d.click("#item-flagged option[value=true]").await;
        d.click("#item-filter").await;
        d.wait_for("return location.search.includes('flagged=true')", "the flagged items").await;
        let found = d.js(rows).await;
        if found != json!(["q0"]) {
            problems.push(format!("flagged=true lists {found}, want [q0]"));
        }
        let flags = d.js("return document.querySelector('#items tbody tr .item-flags').innerText").await;
        if flags != json!("1") {
            problems.push(format!("the flags column reads {flags}, want 1"));
        }
        let count = d.js("return document.getElementById('item-count').innerText").await;
        if count != json!("1 item match") {
            problems.push(format!("the count line reads {count}"));
        }
        d.viewport(390, false).await;
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("the flagged items page overflows at 390 px: {over}"));
        }
        d.viewport(1280, false).await;

        d.click("#items tbody tr a").await;
        d.wait_for("return document.getElementById('item-preview') !== null", "the item preview").await;
        let seen = d.js(labels).await;
        let row = |who: &str| -> Vec<String> {
            seen.as_array()
                .into_iter()
                .flatten()
                .find(|r| r[0] == who)
                .map(|r| r.as_array().unwrap().iter().map(|c| c.as_str().unwrap_or_default().to_string()).collect())
                .unwrap_or_default()
        };
        let (a, b) = (row("ann"), row("bob"));
        if a.get(1).map(String::as_str) != Some("accepted by admin")
            || !a.get(2).is_some_and(|e| e.starts_with("preference: ") && e.ends_with("better (strength 2)"))
        {
            problems.push(format!("ann's label reads {a:?}, want accepted with her answer"));
        }
        if b.get(1).map(String::as_str) != Some("rejected by admin: answered without reading")
            || b.get(2).map(String::as_str) != Some("none (rejected)")
        {
            problems.push(format!("bob's label reads {b:?}, want rejected with the reason and no answer"));
        }
        let flag = d.js("return document.querySelector('#flags li').innerText").await;
        if flag != json!("ann: Response B is cut off") {
            problems.push(format!("the flag reads {flag}"));
        }
        let adjudicated = d.js("return document.querySelector('#adjudication .adjudicated').innerText").await;
        if adjudicated != json!("preference: A better (strength 3)") {
            problems.push(format!("the adjudicated answer reads {adjudicated}"));
        }
        d.js("document.getElementById('adjudication').scrollIntoView(); return true").await;
        d.screenshot("item-preview-1280").await;
        for dark in [false, true] {
            d.viewport(390, dark).await;
            let over = d.overflowing().await;
            if over != json!([]) {
                problems.push(format!("the item preview overflows at 390 px (dark: {dark}): {over}"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
}
