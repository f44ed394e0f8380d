//! What a person sees while labelling with model suggestions and reviewing items, in
//! headless Chromium: spans highlighted in the response text (and removed again) with the
//! offsets still indexing the stored text; suggested answers pre-filled under a visible
//! "suggested by" note, and a changed answer stored as the person's; the admin's item
//! search and filters. Writes `docs/img/feedback-{spans,suggestions,items}-*.png`.
//! Skipped when Chromium or chromedriver is missing.
mod common;
use common::browser::*;
use common::*;
use reins_feedback::{Role, ServerConfig};
use serde_json::{json, Value};
use std::time::Duration;

/// Selects `target` in the first response as a mouse drag would, across the text nodes
/// that highlighting splits the text into.
const SELECT: &str = "const pre = document.querySelector('pre.response');
    const i = pre.textContent.indexOf(arguments[0]); if (i < 0) return false;
    const at = (k) => { const w = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT); let seen = 0;
      for (let n = w.nextNode(); n; n = w.nextNode()) { if (k <= seen + n.data.length) return [n, k - seen]; seen += n.data.length; } };
    const a = at(i), b = at(i + arguments[0].length);
    const r = document.createRange(); r.setStart(a[0], a[1]); r.setEnd(b[0], b[1]);
    const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); return true;";

/// The text of the marks naming `tag`, in order.
const MARKED: &str = "return Array.from(document.querySelectorAll('pre.response mark'))
    .filter((m) => m.dataset.tag.split(' ').includes(arguments[0])).map((m) => m.textContent).join('')";

fn chars(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Two overlapping spans after a leading newline, CRLFs, an emoji and a combining mark: each
/// is highlighted with its tag's name, the marked text is the stored substring at the
/// stored offsets, removing one un-highlights it, and the export holds the one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_highlights_spans_and_removes_them() {
    let text = "\nFirst line\r\nsmile \u{1F600} then cafe\u{301} is wrong here\r\nend";
    let wrong = "cafe\u{301} is wrong";
    let unsafe_ = "\u{1F600} then cafe\u{301}";
    let offsets = |t: &str| {
        let start = text[..text.find(t).unwrap()].chars().count();
        (start, start + t.chars().count())
    };
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [{"name": "issues", "kind": "spans", "tags": ["wrong", "unsafe"]}]});
    let item =
        json!({"id": "tricky", "prompt": "Say hi, then describe the cafe.", "responses": [text]}).to_string() + "\n";
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, config, &item).await;
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        assert_eq!(d.js_with(SELECT, json!([wrong])).await, true, "the text is on the page");
        d.keys(&["1"]).await;
        assert_eq!(d.js_with(SELECT, json!([unsafe_])).await, true, "the second span's text is on the page");
        d.keys(&["2"]).await;
        for (tag, t) in [("wrong", wrong), ("unsafe", unsafe_)] {
            let (start, end) = offsets(t);
            let marked = d.js_with(MARKED, json!([tag])).await;
            if marked != json!(chars(text, start, end)) {
                problems.push(format!("`{tag}` marks {marked}, the stored text at {start}..{end} is {t:?}"));
            }
        }
        let same = d
            .js_with("return document.querySelector('pre.response').textContent === arguments[0]", json!([text]))
            .await;
        if same != json!(true) {
            problems.push("highlighting changed the response's text".into());
        }
        let overlap =
            d.js("const m = document.querySelector('mark.overlap'); return m && [m.dataset.tag, m.textContent]").await;
        if overlap != json!(["wrong unsafe", "cafe\u{301}"]) {
            problems.push(format!("the overlap is marked {overlap}, want both tags on \"cafe\u{301}\""));
        }
        let colours = d
            .js("const bg = (t) => getComputedStyle(Array.from(document.querySelectorAll('pre.response mark:not(.overlap)')).find((m) => m.dataset.tag === t)).backgroundColor;
                 return [bg('wrong'), bg('unsafe')]")
            .await;
        if colours[0] == colours[1] {
            problems.push(format!("both tags are highlighted in {}", colours[0]));
        }
        let listed =
            d.js("return Array.from(document.querySelectorAll('ul.spans li')).map((li) => li.innerText)").await;
        if listed.as_array().map(Vec::len) != Some(2) {
            problems.push(format!("the span list shows {listed}, want two entries"));
        }
        d.screenshot("spans-1280").await;
        d.viewport(1280, true).await;
        let dark = d
            .js("const m = document.querySelector('pre.response mark'); const s = getComputedStyle(m);
                 const sum = (c) => c.match(/\\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b);
                 return [sum(s.backgroundColor) < 400, sum(s.color) > 600]")
            .await;
        if dark != json!([true, true]) {
            problems.push(format!("in dark mode a mark is [dark background, light text] = {dark}"));
        }
        d.viewport(1280, false).await;
        // Remove the `wrong` span (the first listed) with its button.
        let label = d.js("return document.querySelector('ul.spans li .span-remove').getAttribute('aria-label')").await;
        if !label.as_str().unwrap_or_default().starts_with("Remove span wrong") {
            problems.push(format!("the first remove button is labelled {label}"));
        }
        d.click("ul.spans li .span-remove").await;
        let left = d.js_with(MARKED, json!(["wrong"])).await;
        if left != json!("") {
            problems.push(format!("after removing it, `wrong` still marks {left}"));
        }
        let (start, end) = offsets(unsafe_);
        let kept = d.js_with(MARKED, json!(["unsafe"])).await;
        if kept != json!(chars(text, start, end))
            || d.js("return document.querySelectorAll('mark.overlap').length").await != json!(0)
        {
            problems.push(format!("after the removal `unsafe` marks {kept}"));
        }
        // With the keyboard: tag `wrong` again, then Backspace removes the span added last.
        assert_eq!(d.js_with(SELECT, json!([wrong])).await, true);
        d.keys(&["1"]).await;
        let again = d.js_with(MARKED, json!(["wrong"])).await;
        d.keys(&["\u{E003}"]).await;
        let after_backspace = (d.js_with(MARKED, json!(["wrong"])).await, d.js_with(MARKED, json!(["unsafe"])).await);
        if again != json!(chars(text, offsets(wrong).0, offsets(wrong).1))
            || after_backspace != (json!(""), json!(chars(text, start, end)))
        {
            problems.push(format!(
                "re-tagged `wrong` marks {again}; after Backspace [wrong, unsafe] mark {after_backspace:?}"
            ));
        }
        d.keys(&["\u{E007}"]).await;
        let after = d.wait_for(AFTER_SUBMIT, "the submit to finish").await;
        assert_eq!(after, "saved");
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
    drop(b);
    let (start, end) = offsets(unsafe_);
    let e = reins_feedback::export_project(&dbh, &p.id, "spans", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 1, "{:?}", e.train);
    assert_eq!(e.train[0]["spans"], json!([{"start": start, "end": end, "tag": "unsafe", "text": unsafe_}]));
}

/// Suggested answers are pre-filled and marked "suggested by rm-v1" (also for screen
/// readers); changing one says so, and the stored answer is the person's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_prefills_suggestions_and_stores_a_changed_answer() {
    let config = json!({"overlap": 1, "gold_rate": 0.0, "questions": [
        {"name": "preference", "kind": "pairwise", "strength": true},
        {"name": "ok", "kind": "thumbs", "label": "acceptable?"}]});
    let item = json!({"id": "s0", "prompt": "Name a colour of the sky at noon.", "responses": ["Blue, on a clear day.", "Green."],
        "suggestions": {"preference": {"choice": "a", "strength": 2}, "ok": [true, false]}, "suggestion_source": "rm-v1"})
    .to_string()
        + "\n";
    let db = sqlite_db();
    let (server, p, dbh) = serve_project(&db, config, &item).await;
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(390, false).await;
        b.login(&server, "ann", "annotator-pw").await;
        d.goto(&format!("http://{server}/p/{}", p.id)).await;
        d.wait_for("return document.getElementById('task') !== null", "a task").await;
        let shown: Value = d.js("return JSON.parse(document.getElementById('task-data').textContent).responses").await;
        let blue = if shown[0] == "Blue, on a clear day." { "a" } else { "b" };
        let notes = d
            .js("return Array.from(document.querySelectorAll('.field')).map((f) => {
                   const n = f.querySelector('.suggested'); const r = n && n.getBoundingClientRect();
                   return [f.dataset.q, n !== null && r.height > 0 && (f.getAttribute('aria-describedby') || '').split(' ').includes(n.id),
                           n && n.innerText]; })")
            .await;
        for n in notes.as_array().cloned().unwrap_or_default() {
            if n[1] != json!(true) || !n[2].as_str().unwrap_or_default().contains("suggested by rm-v1") {
                problems.push(format!("field {} lacks a visible, described \"suggested by rm-v1\" note: {n}", n[0]));
            }
        }
        let picked = d
            .js("return Array.from(document.querySelectorAll('.field')).map((f) => {
                   const o = f.querySelector('.opt[aria-pressed=\"true\"].selected'); return o && o.dataset.value; })")
            .await;
        let thumbs = if blue == "a" { ["true", "false"] } else { ["false", "true"] };
        if picked != json!([blue, "2", thumbs[0], thumbs[1]]) {
            problems.push(format!("pre-filled options are {picked}, want [{blue}, 2, {}, {}]", thumbs[0], thumbs[1]));
        }
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("the label page with suggestions overflows at 390 px: {over}"));
        }
        d.screenshot("suggestions-390").await;
        // The first field has the focus: pick Green instead, then submit.
        d.keys(&[if blue == "a" { "2" } else { "1" }]).await;
        let note = d.js("return document.querySelector('.field .suggested').innerText").await;
        if note != json!("Changed from the suggestion of rm-v1") {
            problems.push(format!("after a change the note reads {note}"));
        }
        d.keys(&["\u{E007}"]).await;
        let after = d.wait_for(AFTER_SUBMIT, "the submit to finish").await;
        assert_eq!(after, "saved");
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
    drop(b);
    let e = reins_feedback::export_project(&dbh, &p.id, "preference", 0.0).await.unwrap();
    assert_eq!(e.train.len(), 1);
    assert_eq!((e.train[0]["chosen"].clone(), e.train[0]["margin"].clone()), (json!("Green."), json!(2.0)));
    let acceptance = dbh.suggestion_acceptance(&p.id).await.unwrap();
    assert_eq!(acceptance.get("preference"), Some(&(0, 1)), "{acceptance:?}");
    assert_eq!(acceptance.get("ok"), Some(&(1, 0)), "{acceptance:?}");
}

/// The admin's items page: the search box narrows the list, the status filter keeps the
/// labelled item, a row opens its read-only preview; nothing overflows at 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_searches_and_filters_items() {
    let Some(b) = Browser::start().await else { return };
    let d = &b.d;
    let db = sqlite_db();
    let st = state(&db.url, ServerConfig::default()).await;
    let p = reins_feedback::create_project(&st.db, "helpful", &pairwise_config(1)).await.unwrap();
    let prompts = [
        "Explain photosynthesis to a child.",
        "Write a haiku about autumn rain.",
        "How do I reverse a list in Python?",
        "Summarise the plot of Hamlet in two sentences.",
        "What is the boiling point of water at altitude?",
        "Suggest a name for a bakery that sells only bread.",
    ];
    let jsonl: String = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let mut v = json!({"id": format!("q{i}"), "prompt": prompt, "responses": [format!("answer one to {i}"), format!("answer two to {i}")]});
            if i % 2 == 0 {
                v["suggestions"] = json!({"preference": {"choice": "a", "strength": 1}});
                v["suggestion_source"] = json!("rm-v1");
            }
            v.to_string() + "\n"
        })
        .collect();
    reins_feedback::import::import_jsonl(&st.db, &p.id, &jsonl).await.unwrap();
    let u = reins_feedback::create_user(&st.db, "ann", "annotator-pw", Role::Annotator).await.unwrap();
    st.db.add_member(&p.id, &u.id).await.unwrap();
    let server = spawn_server(st).await;
    label_via_api(&server, &p.id, "ann", 2, json!({"preference": {"choice": "a", "strength": 2}}), 2000).await;

    let rows =
        "return Array.from(document.querySelectorAll('#items tbody tr')).map((r) => r.querySelector('td').innerText)";
    let run = async {
        let mut problems: Vec<String> = vec![];
        d.viewport(1280, false).await;
        d.login(&server, "admin", ADMIN_PASSWORD).await;
        let page = format!("http://{server}/p/{}/items", p.id);
        d.goto(&page).await;
        let all = d.js(rows).await;
        if all.as_array().map(Vec::len) != Some(6) {
            problems.push(format!("the items page lists {all}, want 6 rows"));
        }
        d.screenshot("items-1280").await;
        d.viewport(1280, true).await;
        d.screenshot("items-dark-1280").await;
        d.viewport(1280, false).await;
        d.type_into("#item-search", "haiku\u{E007}").await;
        d.wait_for("return location.search.includes('q=haiku')", "the search results").await;
        let found = d.js(rows).await;
        if found != json!(["q1"]) {
            problems.push(format!("searching \"haiku\" lists {found}, want [q1]"));
        }
        let count = d.js("return document.getElementById('item-count').innerText").await;
        if count != json!("1 item match") {
            problems.push(format!("the count line reads {count}"));
        }
        d.goto(&page).await;
        d.click("#item-status option[value=complete]").await;
        d.click("#item-filter").await;
        d.wait_for("return location.search.includes('status=complete')", "the filtered list").await;
        let done =
            d.js("return Array.from(document.querySelectorAll('#items tbody tr')).map((r) => r.dataset.status)").await;
        if done != json!(["complete", "complete"]) {
            problems.push(format!("status filter `complete` lists statuses {done}, want the 2 labelled items"));
        }
        d.goto(&page).await;
        d.click("#item-suggested option[value=true]").await;
        d.click("#item-filter").await;
        d.wait_for("return location.search.includes('suggested=true')", "the filtered list").await;
        let suggested = d.js(rows).await;
        if suggested != json!(["q0", "q2", "q4"]) {
            problems.push(format!("suggested=true lists {suggested}, want [q0, q2, q4]"));
        }
        d.viewport(390, false).await;
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("the items page overflows at 390 px: {over}"));
        }
        d.click("#items tbody tr a").await;
        d.wait_for("return document.getElementById('item-preview') !== null", "the item preview").await;
        let text = d.js("return document.querySelector('pre.prompt').textContent").await;
        if text != json!(prompts[0]) {
            problems.push(format!("the preview shows the prompt {text}"));
        }
        let over = d.overflowing().await;
        if over != json!([]) {
            problems.push(format!("the item preview overflows at 390 px: {over}"));
        }
        assert!(problems.is_empty(), "{}", problems.join("; "));
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("browser session finished in time");
}
