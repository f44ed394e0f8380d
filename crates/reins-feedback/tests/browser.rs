//! A real browser: headless Chromium, driven through chromedriver's WebDriver HTTP API,
//! logs in with the login form, labels with keyboard shortcuts only, and the export
//! contains those labels: pairwise votes, an optional strength left out, and spans selected
//! in text the HTML parser would alter. Skipped when Chromium or chromedriver is missing.
mod common;
use common::browser::*;
use common::*;
use reins_feedback::{Role, ServerConfig};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_labels_with_the_keyboard_and_export_has_the_labels() {
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, pairwise_config(1), &items_jsonl(3)).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let assignment = d
                .wait_for("const t = document.getElementById('task'); return t ? t.dataset.assignment : null", "a task")
                .await;
            assert!(!seen.contains(&assignment), "same task twice");
            // A is better (1), strength "clearly" (2), submit (Enter).
            d.keys(&["1", "2", "\u{E007}"]).await;
            let script = format!("const t = document.getElementById('task'); return (!t && document.getElementById('done') !== null) || (t !== null && t.dataset.assignment !== {assignment});");
            d.wait_for(&script, "the next task").await;
            seen.push(assignment);
        }
        d.wait_for("return document.getElementById('done') !== null", "the done message").await;
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
    drop(b);

    let e = reins_feedback::export_project(&dbh, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 3, "{:?}", e.train);
    for r in &e.train {
        assert_eq!(r["annotator"], "ann");
        assert_eq!(r["margin"], 2.0);
    }
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    for r in &raw.train {
        assert_eq!(r["answer"]["preference"]["winner_position"], 0, "key 1 picks the left response");
        assert!(r["time_ms"].as_i64().unwrap() > 0);
    }
}

/// Strength is optional: Tie then Enter saves the vote without asking "how much better?".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_saves_a_tie_without_a_strength() {
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, pairwise_config(1), &items_jsonl(1)).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        // Tie (3), submit (Enter).
        d.keys(&["3", "\u{E007}"]).await;
        d.wait_for(AFTER_SUBMIT, "the submit to finish").await
    };
    let after = tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    drop(b);
    assert_eq!(after, "saved", "Tie then Enter");
    let raw = reins_feedback::export_project(&dbh, &p.id, "raw", 0.0).await.unwrap();
    assert_eq!(raw.train.len(), 1);
    assert_eq!(raw.train[0]["answer"]["preference"], json!({"outcome": "tie", "strength": null}));
}

/// Span offsets count Unicode scalar values of the stored text, although the browser drops
/// a leading newline in `<pre>` and turns CRLF into LF when it parses the page: a span
/// selected in the page after a leading newline, CRLFs, an emoji and a combining mark
/// exports the exact stored characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_span_offsets_index_the_stored_text() {
    let text = "\nFirst line\r\nsmile \u{1F600} then cafe\u{301} is wrong here\r\nend";
    let target = "cafe\u{301} is wrong";
    let start = text[..text.find(target).unwrap()].chars().count();
    let end = start + target.chars().count();
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [{"name": "issues", "kind": "spans", "tags": ["wrong", "unsafe"]}]});
    let item = json!({"id": "tricky", "prompt": "\nsay hi\r\n", "responses": [text]}).to_string() + "\n";
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, config, &item).await;
    let Some(b) = Browser::start().await else {
        return;
    };
    let d = &b.d;
    let run = async {
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        // Select the target words in the rendered response, as a mouse drag would.
        let select = "const pre = document.querySelector('pre.response'); \
            const w = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT); \
            for (let n = w.nextNode(); n; n = w.nextNode()) { \
              const i = n.data.indexOf(arguments[0]); \
              if (i >= 0) { const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + arguments[0].length); \
                const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); return true; } } \
            return false;";
        assert_eq!(d.js_with(select, json!([target])).await, true, "the target text is on the page");
        // Tag `wrong` (1), submit (Enter).
        d.keys(&["1", "\u{E007}"]).await;
        d.wait_for(AFTER_SUBMIT, "the submit to finish").await
    };
    let after = tokio::time::timeout(Duration::from_secs(60), run).await.expect("browser session finished in time");
    drop(b);
    assert_eq!(after, "saved");
    let e = reins_feedback::export_project(&dbh, &p.id, "spans", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 1, "{:?}", e.train);
    assert_eq!(e.train[0]["completion"], text, "the stored text is exported unchanged");
    assert_eq!(
        e.train[0]["spans"],
        json!([{"start": start, "end": end, "tag": "wrong", "text": target}]),
        "offsets in Unicode scalar values of the stored text"
    );
}

/// Two annotators, one project: ann sees "Item 3 of 5"; the admin's dashboard shows
/// inline-SVG charts with one series per annotator and agreement as numbers, not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_progress_and_charts_per_annotator() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "progress", &pairwise_config(2)).await.unwrap();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &items_jsonl(5)).await.unwrap();
    for name in ["ann", "bob"] {
        let u = reins_feedback::create_user(&st.db, name, "annotator-pw", Role::Annotator).await.unwrap();
        st.db.add_member(&p.id, &u.id).await.unwrap();
    }
    let server = spawn_server(st).await;
    let pick = |c: &str| json!({"preference": {"choice": c, "strength": 2}});
    label_via_api(&server, &p.id, "ann", 2, pick("a"), 1500).await;
    label_via_api(&server, &p.id, "bob", 4, pick("b"), 4000).await;

    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        d.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        let shown = d.js("const e = document.getElementById('progress'); return e && e.innerText").await;
        if shown != json!("Item 3 of 5") {
            problems.push(format!("annotator's progress line is {shown}, not \"Item 3 of 5\""));
        }
        let bar = d.js("const e = document.querySelector('progress'); return e && [e.value, e.max]").await;
        if bar != json!([2, 5]) {
            problems.push(format!("progress bar [value, max] is {bar}, not [2, 5]"));
        }

        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.goto(&format!("http://{server}/p/{}/dashboard", p.id)).await;
        let charts = d
            .js("return Array.from(document.querySelectorAll('svg.chart')).map((s) => [s.getAttribute('aria-label'),
                   Array.from(s.querySelectorAll('.series')).map((l) => l.dataset.annotator).sort()])")
            .await;
        let charts = charts.as_array().cloned().unwrap_or_default();
        if charts.len() < 3 {
            problems.push(format!(
                "{} inline-SVG charts on the dashboard, want progress, speed and agreement",
                charts.len()
            ));
        }
        for c in &charts {
            if c[1] != json!(["ann", "bob"]) {
                problems.push(format!("chart {} has series {}, want one per annotator", c[0], c[1]));
            }
        }
        let agreement = d.js("const t = document.getElementById('agreement'); return t ? t.innerText : ''").await;
        let agreement = agreement.as_str().unwrap_or_default();
        if agreement.contains('{') || !agreement.contains("Fleiss") {
            let all = d.js("return document.body.innerText").await;
            let raw =
                all.as_str().unwrap_or_default().lines().find(|l| l.contains('{')).unwrap_or(agreement).to_string();
            problems.push(format!("agreement is not a table of numbers: {raw}"));
        }
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
}

/// At 390 px nothing overflows (document, tables, label page), dark mode follows the system,
/// focus moves to the next field and fields carry screen-reader labels. Writes the
/// screenshots in docs/img/ used by docs/feedback.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_fits_a_phone_follows_dark_mode_and_moves_focus() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let config = json!({"guidelines": "Pick the **more helpful** answer. Rate each response.", "overlap": 2, "gold_rate": 0.0,
        "questions": [{"name": "preference", "kind": "pairwise", "strength": true},
                      {"name": "quality", "kind": "likert", "aspects": ["helpfulness", "honesty"], "min": 0, "max": 10}]});
    let p = reins_feedback::create_project(&st.db, "phone", &config).await.unwrap();
    let long = "a_very_long_unbroken_token_".repeat(12);
    let jsonl: String = (0..4)
        .map(|i| json!({"id": format!("i{i}"), "prompt": format!("prompt {i}: {long}"), "responses": [format!("good {i} {long}"), format!("bad {i}")]}).to_string() + "\n")
        .collect();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &jsonl).await.unwrap();
    let bob = "bob_with_a_rather_long_username";
    for name in ["ann", bob] {
        let u = reins_feedback::create_user(&st.db, name, "annotator-pw", Role::Annotator).await.unwrap();
        st.db.add_member(&p.id, &u.id).await.unwrap();
    }
    let server = spawn_server(st).await;
    let answers =
        json!({"preference": {"choice": "a", "strength": 3}, "quality": {"helpfulness": [8, 3], "honesty": [9, 4]}});
    label_via_api(&server, &p.id, "ann", 1, answers.clone(), 2500).await;
    label_via_api(&server, &p.id, bob, 3, answers, 6000).await;

    let run = async {
        let mut problems: Vec<String> = vec![];
        d.login(&server, "ann", "annotator-pw").await;
        let label = format!("http://{server}/p/{}", p.id);
        let dashboard = format!("http://{server}/p/{}/dashboard", p.id);
        d.viewport(390, false).await;
        d.goto(&label).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("label page overflows at 390 px: {over}"));
        }
        d.screenshot("label-390-light").await;
        d.viewport(390, true).await;
        let bg = d.js("return getComputedStyle(document.body).backgroundColor").await;
        let dark = d.js("const m = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number); return m.length >= 3 && m[3] !== 0 && m[0] + m[1] + m[2] < 200").await;
        if dark != json!(true) {
            problems.push(format!("background under prefers-color-scheme: dark is {bg}"));
        }
        d.screenshot("label-390-dark").await;

        // Screen-reader labels: every field is a named group, options say whether they are pressed.
        let unnamed = d
            .js("return Array.from(document.querySelectorAll('.field')).filter((f) => f.getAttribute('role') !== 'group' ||
                   !document.getElementById(f.getAttribute('aria-labelledby') || '-')).length")
            .await;
        if unnamed != json!(0) {
            problems.push(format!("{unnamed} fields lack role=group with an aria-labelledby label"));
        }
        // Real focus: picking an option moves the keyboard focus to the next field.
        d.keys(&["1"]).await;
        let focus = d
            .js("const f = Array.from(document.querySelectorAll('.field')); return [f.indexOf(document.activeElement),
                   document.querySelector('.field .opt[aria-pressed=\"true\"]') !== null]")
            .await;
        if focus != json!([1, true]) {
            problems.push(format!("after key 1, [focused field, an option aria-pressed] is {focus}, want [1, true]"));
        }
        // Options 10 and up: on a 0-10 scale "1" then "0" picks 10 (field 2 is A's helpfulness).
        d.keys(&["3", "1", "0"]).await;
        let picked = d.js("const o = document.querySelectorAll('.field')[2].querySelector('.opt.selected'); return o && o.dataset.value").await;
        if picked != json!("10") {
            problems.push(format!("keys 1 then 0 on a 0-10 scale picked {picked}, want 10"));
        }

        d.login(&server, "admin", ADMIN_PASSWORD).await;
        d.viewport(390, false).await;
        d.goto(&dashboard).await;
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("dashboard overflows at 390 px: {over}"));
        }
        d.screenshot("dashboard-390-light").await;
        d.viewport(1280, true).await;
        d.goto(&dashboard).await;
        d.screenshot("dashboard-1280-dark").await;
        d.login(&server, "ann", "annotator-pw").await;
        d.viewport(1280, false).await;
        d.goto(&label).await;
        d.screenshot("label-1280-light").await;
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("browser session finished in time");
}

/// On a 15-field page the responses stay in view beside the questions; a question's
/// help text is shown (and read out with its first field); scale points carry their labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_keeps_responses_beside_questions_with_help_and_scale_labels() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let aspects = ["helpfulness", "honesty", "harmlessness", "clarity", "accuracy", "brevity", "tone"];
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [
        {"name": "preference", "kind": "pairwise"},
        {"name": "quality", "kind": "likert", "aspects": aspects, "help": "Rate how well the response does on each aspect.",
         "scale_labels": ["useless", "poor", "adequate", "good", "excellent"]}]});
    let p = reins_feedback::create_project(&st.db, "long", &config).await.unwrap();
    let long = "A sentence of a long response. ".repeat(60);
    let jsonl = json!({"id": "i0", "prompt": "Explain.", "responses": [long.clone(), long]}).to_string() + "\n";
    reins_feedback::import::import_jsonl(&st.db, &p.id, &jsonl).await.unwrap();
    let u = reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.add_member(&p.id, &u.id).await.unwrap();
    let server = spawn_server(st).await;

    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        d.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        let n = d.js("return document.querySelectorAll('.field').length").await;
        assert_eq!(n, json!(15), "fields on the page");
        let visible = d
            .js("const f = document.querySelectorAll('.field'); f[f.length - 1].scrollIntoView({block: 'end'});
                 const r = document.querySelector('pre.response').getBoundingClientRect();
                 return r.top < innerHeight - 100 && r.bottom > 100")
            .await;
        if visible != json!(true) {
            problems.push("with the last of 15 fields in view, the responses are scrolled away".into());
        }
        let help = d
            .js("const f = document.querySelectorAll('.field')[1]; const h = document.getElementById(f.getAttribute('aria-describedby') || '-');
                 return h && h.innerText")
            .await;
        if help != json!("Rate how well the response does on each aspect.") {
            problems.push(format!("help of the likert question (aria-describedby of its first field) is {help}"));
        }
        let top = d.js("const o = document.querySelectorAll('.field')[1].querySelector('.opt[data-value=\"5\"]'); return o && o.innerText").await;
        if !top.as_str().unwrap_or_default().contains("excellent") {
            problems.push(format!("scale point 5 reads {top}, want its label \"excellent\""));
        }
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
}
