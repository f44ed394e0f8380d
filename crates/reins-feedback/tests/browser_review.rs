//! Fixing and reviewing labels in a real browser: an annotator goes
//! back and changes a label (the form shows the old answer, the export the new one), a
//! half-filled form survives a reload, flag differs from skip, gold feedback appears after a
//! gold item; a reviewer accepts, corrects, rejects and adjudicates, and the pages and the
//! exports show it. Writes docs/img/feedback-review-*.png. Skipped without Chromium.
mod common;
use common::browser::*;
use common::*;
use reins_feedback::{Role, ServerConfig};
use serde_json::{json, Value};
use std::time::Duration;

const ENTER: &str = "\u{E007}";

fn config(overlap: u32, gold_rate: f64) -> Value {
    json!({"guidelines": "Pick the **more helpful** answer.", "overlap": overlap, "gold_rate": gold_rate,
           "gold_feedback": true, "questions": [{"name": "preference", "kind": "pairwise"}]})
}

const TASK: &str = "const t = document.getElementById('task'); return t ? t.dataset.assignment : null";

/// Labels every task left for `user` through the API, preferring the response that starts
/// with `prefer(item_id)`.
async fn label_all(server: &str, project: &str, user: &str, prefer: impl Fn(&str) -> &'static str) {
    let body = json!({"username": user, "password": "annotator-pw"}).to_string();
    let (_, text) = http(server, "POST", "/api/login", &[], &body).await.unwrap();
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    loop {
        let (status, text) = http(server, "GET", &format!("/api/projects/{project}/next"), &auth, "").await.unwrap();
        if status == 204 {
            return;
        }
        let t: Value = serde_json::from_str(&text).unwrap();
        let first = t["responses"][0].as_str().unwrap();
        let choice = if first.starts_with(prefer(t["item_id"].as_str().unwrap())) { "a" } else { "b" };
        let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": t["assignment_id"],
                          "answers": {"preference": {"choice": choice}}});
        let (status, text) =
            http(server, "POST", &format!("/api/projects/{project}/submissions"), &auth, &body.to_string())
                .await
                .unwrap();
        assert_eq!(status, 201, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_annotator_changes_a_label_keeps_a_draft_flags_and_sees_gold_feedback() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "fix", &config(1, 0.0)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &items_jsonl(3)).await.unwrap();
    let gold = reins_feedback::create_project(&st.db, "gold", &config(1, 1.0)).await.unwrap();
    let g =
        "{\"id\": \"g1\", \"prompt\": \"2+2?\", \"responses\": [\"four\", \"five\"], \"gold\": {\"preference\": 0}}\n";
    reins_feedback::import::import_jsonl(&st.db, &gold.id, g).await.unwrap();
    let u = reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.add_member(&p.id, &u.id).await.unwrap();
    st.db.add_member(&gold.id, &u.id).await.unwrap();
    let dbh = st.db.clone();
    let server = spawn_server(st).await;
    let label = format!("http://{server}/p/{}", p.id);

    let run = async {
        d.viewport(1280, false).await;
        d.login(&server, "ann", "annotator-pw").await;
        d.goto(&label).await;
        let first = d.wait_for(TASK, "a task").await;
        let shown = d.js("return JSON.parse(document.getElementById('task-data').textContent).responses").await;
        // A is better (1), submit (Enter).
        d.keys(&["1", ENTER]).await;
        let script =
            format!("const t = document.getElementById('task'); return t !== null && t.dataset.assignment !== {first}");
        d.wait_for(&script, "the next task").await;
        let second = d.js(TASK).await;

        // A draft survives a reload: B (2), reload, B is still pressed and the page says so.
        d.keys(&["2"]).await;
        d.goto(&label).await;
        d.wait_for(TASK, "the task after a reload").await;
        assert_eq!(d.js(TASK).await, second, "the same task after a reload");
        let pressed = d
            .wait_for(
                "const o = document.querySelector('#task .opt[aria-pressed=\"true\"]'); return o && o.dataset.value",
                "the draft",
            )
            .await;
        assert_eq!(pressed, "b", "the draft's choice is pressed again");
        let note = d.js("const n = document.getElementById('draft-note'); return n && n.innerText").await;
        assert!(note.as_str().unwrap_or_default().contains("restored"), "draft note: {note}");

        // Go back (u) to my recent labels; the newest is the first label, "A better".
        d.keys(&["u"]).await;
        d.wait_for("return location.pathname.endsWith('/mine')", "my recent labels").await;
        let row = d.js("return document.querySelector('#mine tbody tr .answer').innerText").await;
        assert!(row.as_str().unwrap().contains("A better"), "first row: {row}");
        d.viewport(390, false).await;
        let over = d.overflowing().await;
        assert_eq!(over, json!([]), "my recent labels overflow at 390 px");
        d.screenshot("review-mine-390").await;
        d.viewport(1280, false).await;
        // Its number (1) opens the form, pre-filled with the old answer.
        d.keys(&["1"]).await;
        d.wait_for("return document.getElementById('edit-notice') !== null", "the change form").await;
        let pressed = d
            .wait_for(
                "const o = document.querySelector('#task .opt[aria-pressed=\"true\"]'); return o && o.dataset.value",
                "the pre-filled answer",
            )
            .await;
        assert_eq!(pressed, "a", "the form shows the old answer");
        d.screenshot("review-change-1280").await;
        assert_eq!(d.js("return document.getElementById('skip') === null").await, true, "no skip while changing");
        d.keys(&["2", ENTER]).await;
        d.wait_for("return location.pathname.endsWith('/mine')", "back to my recent labels").await;
        let row = d.js("return document.querySelector('#mine tbody tr .answer').innerText").await;
        assert!(
            row.as_str().unwrap().contains("B better") && row.as_str().unwrap().contains("changed"),
            "after the change: {row}"
        );

        // Flag (f) then skip: the flag is sent, the task stays until it is skipped.
        d.keys(&["\u{E00C}"]).await; // Esc: back to labelling
        d.wait_for(TASK, "the label page").await;
        d.keys(&["f"]).await;
        let open = d.js("return [document.getElementById('flag-box').hidden, document.getElementById('flag').getAttribute('aria-expanded'), document.activeElement.id]").await;
        assert_eq!(open, json!([false, "true", "flag-note"]), "f opens the flag note");
        d.viewport(390, false).await;
        assert_eq!(d.overflowing().await, json!([]), "label page with the flag box overflows at 390 px");
        d.viewport(1280, false).await;
        d.keys(&["T", "h", "e", " ", "1", "s", "t", ENTER]).await;
        d.wait_for("return document.getElementById('flag').disabled", "the flag to be sent").await;
        assert_eq!(d.js(TASK).await, second, "flagging keeps the task");
        let status = d.js("return document.getElementById('status').innerText").await;
        assert!(status.as_str().unwrap().contains("label or skip"), "{status}");
        // The skip asks for a reason (window.prompt, answered here).
        d.js("window.prompt = () => 'cannot judge';").await;
        d.keys(&["\u{E00C}"]).await;
        let script = format!(
            "const t = document.getElementById('task'); return t !== null && t.dataset.assignment !== {second}"
        );
        d.wait_for(&script, "the task after the skip").await;

        // Gold feedback: a wrong answer on a gold item is named with the expected one.
        d.goto(&format!("http://{server}/p/{}", gold.id)).await;
        d.wait_for(TASK, "the gold task").await;
        let shown_gold = d.js("return JSON.parse(document.getElementById('task-data').textContent).responses").await;
        let wrong = if shown_gold[0] == "five" { "1" } else { "2" };
        d.keys(&[wrong, ENTER]).await;
        let fb = d
            .wait_for("const g = document.getElementById('gold-feedback'); return g && g.innerText", "gold feedback")
            .await;
        let expect = if shown_gold[0] == "four" { "A better" } else { "B better" };
        let fb = fb.as_str().unwrap();
        assert!(fb.contains("did not match") && fb.contains(expect), "gold feedback: {fb}");
        // Admins see each annotator's gold accuracy on the dashboard.
        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.goto(&format!("http://{server}/p/{}/dashboard", gold.id)).await;
        let acc =
            d.js("const c = document.querySelector('td[data-label=\"gold accuracy\"]'); return c && c.innerText").await;
        assert_eq!(acc, "0.0% of 1", "ann's gold accuracy on the dashboard");
        shown
    };
    let shown = tokio::time::timeout(Duration::from_secs(120), run).await.expect("browser session finished in time");
    drop(b);

    let pref = reins_feedback::export_project(&dbh, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(pref.train.len(), 1, "{:?}", pref.train);
    assert_eq!(pref.train[0]["chosen"], shown[1], "the export holds the changed answer (B)");
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    let skip = raw.train.iter().find(|r| r["kind"] == "skip").expect("the skip is stored");
    assert_eq!(skip["skip_reason"], "cannot judge");
    let flags = dbh.flags(&p.id).await.unwrap();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].note, "The 1st", "keys typed in the note stay in the note");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reviewer_accepts_corrects_rejects_and_adjudicates() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "reviewed", &config(2, 0.0)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &items_jsonl(3)).await.unwrap();
    for name in ["ann", "bob", "rita"] {
        let u = reins_feedback::create_user(&st.db, name, "annotator-pw", Role::Annotator).await.unwrap();
        if name == "rita" {
            st.db.add_reviewer(&p.id, &u.id).await.unwrap();
        } else {
            st.db.add_member(&p.id, &u.id).await.unwrap();
        }
    }
    let dbh = st.db.clone();
    let server = spawn_server(st).await;
    label_all(&server, &p.id, "ann", |_| "good").await;
    // bob disagrees with ann on item-2 only: a 1-1 tie to adjudicate.
    label_all(&server, &p.id, "bob", |item| if item == "item-2" { "bad" } else { "good" }).await;
    // bob asked for a review of one of his labels while labelling it.
    let subs = dbh.submissions(&p.id).await.unwrap();
    let flagged = subs.iter().find(|s| s.user_id != subs[0].user_id && s.item_id == subs[0].item_id).unwrap();
    dbh.insert_flag(&p.id, &flagged.assignment_id, &flagged.user_id, "Both answers look the same to me").await.unwrap();
    let items = "return Array.from(document.querySelectorAll('.review-item')).map((e) => e.dataset.submission)";

    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        d.login(&server, "rita", "annotator-pw").await;
        // A reviewer who is not a member finds the queue on the home page.
        let links = d
            .js("return Array.from(document.querySelectorAll('.reviewing a')).map((a) => a.getAttribute('href'))")
            .await;
        assert_eq!(links, json!([format!("/p/{}/review", p.id)]), "the home page links the review queue");
        d.click(".reviewing a").await;
        d.wait_for("return document.getElementById('review-queue') !== null", "the review queue").await;
        let queue = d.js(items).await;
        assert_eq!(queue.as_array().map(Vec::len), Some(6), "six labels to review: {queue}");
        // Act on labels of items 0 and 1, so item-2's disagreement stays for adjudication.
        let ids = d
            .js("return Array.from(document.querySelectorAll('.review-item')).filter((e) => !e.querySelector('h3').innerText.includes('item-2')).map((e) => e.dataset.submission)")
            .await;
        let ids: Vec<String> = ids.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        let top = d.js("const e = document.querySelector('.review-item'); return [e.dataset.submission, e.querySelector('.flag-note').innerText]").await;
        if top != json!([flagged.id, "Flag: Both answers look the same to me"]) {
            problems.push(format!("the flagged label is not first with its note: {top}"));
        }
        let names = d.js("return Array.from(document.querySelectorAll('.review-item button, .review-item a, .review-item input')).filter((e) => !(e.getAttribute('aria-label') || '').includes(' item ')).length").await;
        if names != json!(0) {
            problems.push(format!("{names} review controls lack a label naming their item"));
        }
        d.screenshot("review-1280").await;
        d.viewport(390, false).await;
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("review page overflows at 390 px: {over}"));
        }
        d.screenshot("review-390").await;
        d.viewport(1280, true).await;
        d.screenshot("review-dark-1280").await;
        d.viewport(1280, false).await;

        // Accept the first.
        d.click(&format!(".review-item[data-submission=\"{}\"] button.accept", ids[0])).await;
        d.wait_for(
            "return document.querySelectorAll('.review-item').length === 5",
            "the accepted label to leave the queue",
        )
        .await;
        // Reject the second: without a reason the page asks for one.
        let sel = format!(".review-item[data-submission=\"{}\"]", ids[1]);
        d.click(&format!("{sel} button.reject")).await;
        let said =
            d.js(&format!("return document.querySelector('{} .result').innerText", sel.replace('\'', "\\'"))).await;
        if !said.as_str().unwrap_or_default().contains("reason") {
            problems.push(format!("reject without a reason says {said}"));
        }
        // The reason, then Enter.
        d.type_into(&format!("{sel} input.reason"), "ignored the prompt\u{E007}").await;
        d.wait_for(
            "return document.querySelectorAll('.review-item').length === 4",
            "the rejected label to leave the queue",
        )
        .await;
        // Correct the third: the form shows its answer (item order: good is A), pick B, save.
        d.click(&format!(".review-item[data-submission=\"{}\"] a.correct", ids[2])).await;
        d.wait_for("return document.getElementById('edit-notice') !== null", "the correction form").await;
        let pressed = d
            .wait_for(
                "const o = document.querySelector('#task .opt[aria-pressed=\"true\"]'); return o && o.dataset.value",
                "the pre-filled answer",
            )
            .await;
        if pressed != "a" {
            problems.push(format!("the correction form shows {pressed}, want the label's answer a"));
        }
        d.keys(&["2", ENTER]).await;
        d.wait_for(
            "return location.pathname.endsWith('/review') && document.querySelectorAll('.review-item').length === 3",
            "back to the queue",
        )
        .await;
        let verdicts = d
            .js("return Array.from(document.querySelectorAll('#reviewed .verdict')).map((e) => e.innerText).sort()")
            .await;
        if verdicts != json!(["accepted", "corrected", "rejected: ignored the prompt"]) {
            problems.push(format!("recently reviewed shows {verdicts}"));
        }
        // Adjudicate item-2: its two answers are offered; pick "A better" (good 2). (The
        // correction above may have made another tie: only item-2's is settled here.)
        let item2 = "Array.from(document.querySelectorAll('.adjudicate-item')).find((e) => e.querySelector('h3').innerText.includes('item-2'))";
        let offered =
            d.js(&format!("return Array.from({item2}.querySelectorAll('button.pick')).map((b) => b.innerText)")).await;
        if offered.as_array().map(Vec::len) != Some(2) {
            problems.push(format!("adjudication of item-2 offers {offered}"));
        }
        d.js(&format!(
            "Array.from({item2}.querySelectorAll('button.pick')).find((b) => b.innerText.includes('A better')).click()"
        ))
        .await;
        d.wait_for(
            &format!("return document.readyState === 'complete' && !{item2}"),
            "item-2's disagreement to be settled",
        )
        .await;
        assert!(problems.is_empty(), "{}", problems.join("; "));
        ids
    };
    let ids = tokio::time::timeout(Duration::from_secs(120), run).await.expect("browser session finished in time");
    drop(b);

    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    let by_id = |id: &str| raw.train.iter().find(|r| r["submission_id"] == id).cloned().unwrap();
    assert_eq!(by_id(&ids[0])["review"], "accepted");
    assert_eq!(
        (by_id(&ids[1])["review"].clone(), by_id(&ids[1])["effective_answer"].clone()),
        (json!("rejected"), Value::Null)
    );
    let corrected = by_id(&ids[2]);
    assert_eq!(corrected["review"], "corrected");
    assert_eq!(corrected["effective_answer"]["preference"]["winner"], 1, "the correction picked response 1 (B)");
    let pref = reins_feedback::export_project(&dbh, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(pref.train.len(), 5, "six labels, one rejected");
    let consensus = reins_feedback::export_project(&dbh, &p.id, "consensus", 0.0).await.unwrap();
    let settled = consensus.train.iter().find(|r| r["item_id"] == "item-2").expect("item-2 in the consensus export");
    assert_eq!((&settled["source"], &settled["chosen"]), (&json!("adjudicated"), &json!("good 2")));
}

/// Changing a label of other kinds: the form shows its thumbs, spans and critique as stored
/// (in the positions the annotator saw), and saving unchanged keeps them in the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_change_form_shows_thumbs_spans_and_critiques() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [
        {"name": "ok", "kind": "thumbs"}, {"name": "issues", "kind": "spans", "tags": ["wrong", "unsafe"]},
        {"name": "note", "kind": "critique"}]});
    let item = json!({"id": "x", "prompt": "say hi", "responses": ["hello there", "go away"]}).to_string() + "\n";
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, config, &item).await;
    // ann labels through the API: response "go away" down, its "away" tagged, a critique.
    let body = json!({"username": "ann", "password": "annotator-pw"}).to_string();
    let (_, text) = http(&server, "POST", "/api/login", &[], &body).await.unwrap();
    let token = serde_json::from_str::<Value>(&text).unwrap()["token"].as_str().unwrap().to_string();
    let auth = [("Authorization", format!("Bearer {token}"))];
    let (_, text) = http(&server, "GET", &format!("/api/projects/{}/next", p.id), &auth, "").await.unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let rude = if t["responses"][0] == "go away" { 0 } else { 1 };
    let mut spans = vec![json!([]), json!([])];
    spans[rude] = json!([{"start": 3, "end": 7, "tag": "unsafe"}]);
    let mut critique = vec![json!(""), json!("")];
    critique[rude] = json!("rude");
    let thumbs: Vec<bool> = (0..2).map(|i| i != rude).collect();
    let answers = json!({"ok": thumbs, "issues": spans, "note": critique});
    let body = json!({"assignment_id": t["assignment_id"], "idempotency_key": "k", "answers": answers});
    let (status, text) =
        http(&server, "POST", &format!("/api/projects/{}/submissions", p.id), &auth, &body.to_string()).await.unwrap();
    assert_eq!(status, 201, "{text}");
    let sid = serde_json::from_str::<Value>(&text).unwrap()["submission_id"].as_str().unwrap().to_string();

    let run = async {
        d.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}/mine/{sid}", p.id)).await;
        d.wait_for("return document.getElementById('edit-notice') !== null", "the change form").await;
        let shown = d
            .wait_for(
                "const f = Array.from(document.querySelectorAll('#task .field')); if (!f.length) return null;
                 const thumbs = f.filter((x) => x.dataset.kind === 'thumbs').map((x) => { const o = x.querySelector('.opt[aria-pressed=\"true\"]'); return o && o.dataset.value; });
                 const notes = f.filter((x) => x.dataset.kind === 'critique').map((x) => x.querySelector('textarea').value);
                 const spans = Array.from(document.querySelectorAll('ul.spans')).map((u) => Array.from(u.querySelectorAll('li')).map((li) => li.innerText.replace(/ *remove$/, '').trim()).join('; '));
                 return thumbs.every((x) => x) ? [thumbs, spans, notes] : null;",
                "the pre-filled form",
            )
            .await;
        let mut want_thumbs = vec!["true", "true"];
        want_thumbs[rude] = "false";
        let mut want_spans = vec!["", ""];
        want_spans[rude] = "unsafe: \u{201c}away\u{201d}";
        let mut want_notes = vec!["", ""];
        want_notes[rude] = "rude";
        assert_eq!(shown, json!([want_thumbs, want_spans, want_notes]), "the form shows the stored answer");
        d.click("#submit").await;
        d.wait_for("return location.pathname.endsWith('/mine')", "back to my recent labels").await;
    };
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    drop(b);
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    assert_eq!(raw.train[0]["edited"], true, "the unchanged save is an edit");
    assert_eq!(raw.train[0]["effective_answer"], raw.train[0]["answer"], "saving unchanged keeps every answer");
}
