//! 16 real chat templates render exactly what transformers 5.25 renders (or fail where it
//! raises), for plain conversations, a `tools` list, tool calls and reasoning.
//! Fixtures: `tests/data/chat_templates/` (README there says where each file came from).

use reins_data::formats::trl::parse_message;
use reins_data::testing::fixtures_dir;
use reins_data::{HfTokenizer, Message};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tokenizer folder the renderings were made with: the fixture llama tokenizer, its
/// special tokens set as in `render_with_transformers.py`, and the template.
fn tokenizer_with(dir: &Path, template: &Path) -> HfTokenizer {
    let src = fixtures_dir().join("models/llama");
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy tokenizer.json");
    let mut cfg = read_json(&src.join("tokenizer_config.json"));
    for (k, v) in [("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<|pad|>"), ("unk_token", "<unk>")] {
        cfg[k] = json!(v);
    }
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).expect("write config");
    std::fs::copy(template, dir.join("chat_template.jinja")).expect("copy template");
    HfTokenizer::from_dir(dir).expect("tokenizer folder loads")
}

fn messages(v: &Value) -> Vec<Message> {
    v.as_array().expect("a list of messages").iter().map(|m| parse_message(m).expect("message parses")).collect()
}

/// One rendering to compare: template, case key, messages, tools, add_generation_prompt.
struct Case {
    key: String,
    messages: Vec<Message>,
    tools: Option<Value>,
    add_generation_prompt: bool,
}

/// The fixture's `rendered_on` day (`YYYY-MM-DD`) as Unix seconds at noon UTC: templates that
/// print today's date printed that one, so the comparison renders with it.
fn rendered_on(expected: &Value) -> u64 {
    let day = expected["rendered_on"].as_str().expect("the renderings name the day they were made (rendered_on)");
    let ymd: Vec<i64> = day.split('-').map(|x| x.parse().expect("rendered_on is YYYY-MM-DD")).collect();
    let (y, m, d) = (ymd[0] - i64::from(ymd[1] <= 2), ymd[1], ymd[2]);
    // Days from civil (H. Hinnant).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + 12 * 3_600) as u64
}

/// Renders every case with every template and compares with `expected[template][key]`
/// (`{"ok": text}` or `{"err": message}`), with "now" fixed at the day the renderings were
/// made. Returns the mismatches, one line each.
fn compare(cases: &[Case], expected: &Value) -> (usize, Vec<String>) {
    reins_data::chat_template::with_fixed_now(rendered_on(expected), || compare_now(cases, expected))
}

fn compare_now(cases: &[Case], expected: &Value) -> (usize, Vec<String>) {
    let by_template = expected["renderings"].as_object().expect("renderings");
    let mut checked = 0;
    let mut bad = Vec::new();
    for (name, want) in by_template {
        let dir = tempfile::tempdir().expect("temp dir");
        let tok = tokenizer_with(dir.path(), &data_dir().join("templates").join(format!("{name}.jinja")));
        for case in cases {
            let want = &want[&case.key];
            assert!(want.is_object(), "no transformers rendering for {name} {}", case.key);
            let extra = match &case.tools {
                Some(t) => json!({ "tools": t }),
                None => Value::Null,
            };
            let got = tok.apply_chat_template_with(&case.messages, case.add_generation_prompt, &extra);
            checked += 1;
            match (want.get("ok").and_then(Value::as_str), got) {
                (Some(w), Ok(g)) if w == g => {}
                (Some(w), Ok(g)) => {
                    let at = w.chars().zip(g.chars()).take_while(|(a, b)| a == b).count();
                    let tail = |s: &str| s.chars().skip(at).take(40).collect::<String>();
                    bad.push(format!(
                        "{name} {}: differs at char {at}: transformers {:?}, reins {:?}",
                        case.key,
                        tail(w),
                        tail(&g)
                    ));
                }
                (Some(_), Err(e)) => bad.push(format!("{name} {}: transformers renders, reins fails: {e}", case.key)),
                (None, Ok(_)) => {
                    bad.push(format!("{name} {}: transformers raises {}, reins renders", case.key, want["err"]))
                }
                (None, Err(_)) => {}
            }
        }
    }
    (checked, bad)
}

#[test]
fn the_rendering_day_is_read_as_noon_utc() {
    assert_eq!(rendered_on(&json!({"rendered_on": "1970-01-01"})), 12 * 3_600);
    // 2026-12-06 is day 20,793 since the epoch; 2024-03-01 follows a leap day (19,783).
    assert_eq!(rendered_on(&json!({"rendered_on": "2026-12-06"})), 20_793 * 86_400 + 43_200);
    assert_eq!(rendered_on(&json!({"rendered_on": "2024-03-01"})), 19_783 * 86_400 + 43_200);
}

#[test]
fn real_templates_render_like_transformers_with_and_without_tools() {
    let spec = read_json(&data_dir().join("cases.json"));
    let mut cases = Vec::new();
    for (name, msgs) in spec["conversations"].as_object().expect("conversations") {
        for agp in [false, true] {
            let key = format!("{name}|agp={}", if agp { "True" } else { "False" });
            cases.push(Case { key, messages: messages(msgs), tools: None, add_generation_prompt: agp });
        }
    }
    cases.push(Case {
        key: "X_tools_single_user|agp=True".into(),
        messages: messages(&spec["conversations"]["C1_single_user"]),
        tools: Some(spec["tools"].clone()),
        add_generation_prompt: true,
    });
    let (checked, bad) = compare(&cases, &read_json(&data_dir().join("transformers_renderings.json")));
    assert_eq!(checked, 16 * 9);
    assert!(bad.is_empty(), "{} of {checked} renderings differ from transformers:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn real_templates_render_tool_calls_and_reasoning_like_transformers() {
    let spec = read_json(&data_dir().join("tool_cases.json"));
    let mut cases = Vec::new();
    for (name, case) in spec["cases"].as_object().expect("cases") {
        for agp in case["add_generation_prompt"].as_array().expect("agp list") {
            let agp = agp.as_bool().expect("bool");
            cases.push(Case {
                key: format!("{name}|agp={}", if agp { "True" } else { "False" }),
                messages: messages(&case["messages"]),
                tools: case["tools"].as_bool().expect("tools flag").then(|| spec["tools"].clone()),
                add_generation_prompt: agp,
            });
        }
    }
    let (checked, bad) = compare(&cases, &read_json(&data_dir().join("tool_renderings.json")));
    assert_eq!(checked, 16 * 5);
    assert!(bad.is_empty(), "{} of {checked} renderings differ from transformers:\n{}", bad.len(), bad.join("\n"));
}
