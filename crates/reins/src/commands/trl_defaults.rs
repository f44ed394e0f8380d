//! Every config key reins shares with TRL 1.16 takes TRL's default, so a TRL user's habits
//! and config files carry over. Checked against `fixtures/hf/trl/defaults.json` (every field
//! of TRL's nine config classes, inherited `TrainingArguments` fields included), with the
//! deliberate differences listed below and in `docs/config.md`.

use std::path::PathBuf;

use reins_train::config::FlatConfig;
use serde_json::{Map, Value};

use super::{online, train};

/// (TRL config class or `*` for all, key, why reins differs). Each must be documented in
/// `docs/config.md` and must still differ (the test fails on a stale entry).
const DELIBERATE: &[(&str, &str, &str)] = &[
    ("*", "max_steps", "0 (an unsigned count) means `num_train_epochs` passes, TRL's -1"),
    ("*", "eval_steps", "0 evaluates at the end only; reins has no `eval_strategy` (TRL: None with `no`)"),
    ("GRPOConfig", "min_p", "0.0 is off, TRL's None"),
    ("RLOOConfig", "min_p", "0.0 is off, TRL's None"),
    ("OnlineDPOConfig", "max_length", "online runs do not truncate prompts; the key is the offline trainers'"),
];

/// Which `reins` command reads which TRL config class.
enum Command {
    Offline(train::Method),
    Online(online::Method),
}

fn commands() -> Vec<(&'static str, Command)> {
    use Command::*;
    vec![
        ("SFTConfig", Offline(train::Method::Sft)),
        ("RewardConfig", Offline(train::Method::Reward)),
        ("DPOConfig", Offline(train::Method::Dpo)),
        ("KTOConfig", Offline(train::Method::Kto)),
        ("ORPOConfig", Offline(train::Method::Orpo)),
        ("CPOConfig", Offline(train::Method::Cpo)),
        ("GRPOConfig", Online(online::Method::Grpo)),
        ("RLOOConfig", Online(online::Method::Rloo)),
        ("OnlineDPOConfig", Online(online::Method::OnlineDpo)),
    ]
}

/// The resolved defaults of a command: each config part's default, then the command's presets.
fn resolved_defaults(c: &Command) -> Map<String, Value> {
    let mut flat = FlatConfig::default();
    let parts = match c {
        Command::Offline(m) => {
            train::apply_presets(*m, &mut flat);
            train::default_parts(*m)
        }
        Command::Online(m) => {
            online::apply_presets(*m, &mut flat);
            online::default_parts(*m)
        }
    };
    let mut out = Map::new();
    for p in parts.iter().filter_map(Value::as_object) {
        out.extend(p.clone());
    }
    for (k, v) in flat.table {
        out.insert(k, v);
    }
    out
}

/// Equal as config values: numbers by value (`3` = `3.0`), a one-element list = its element
/// (reins' `loss_type` takes one or many).
fn same(ours: &Value, theirs: &Value) -> bool {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
        }
        (Value::Array(a), b) if a.len() == 1 && !b.is_array() => same(&a[0], b),
        (a, b) => a == b,
    }
}

fn deliberate(class: &str, key: &str) -> bool {
    DELIBERATE.iter().any(|(c, k, _)| (*c == "*" || *c == class) && *k == key)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_shared_key_has_trls_default() {
    let text = std::fs::read_to_string(root().join("fixtures/hf/trl/defaults.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(fixture["trl"], "1.16.0");
    let classes = fixture["configs"].as_object().unwrap();
    let mut wrong = Vec::new();
    let mut used = vec![false; DELIBERATE.len()];
    let mut shared = 0;
    for (class, command) in commands() {
        let trl = classes[class].as_object().unwrap_or_else(|| panic!("{class} missing from the fixture"));
        for (key, ours) in resolved_defaults(&command) {
            let Some(field) = trl.get(&key) else { continue };
            shared += 1;
            let theirs = &field["default"];
            let differs = !same(&ours, theirs);
            if deliberate(class, &key) {
                for (i, (c, k, _)) in DELIBERATE.iter().enumerate() {
                    if (*c == "*" || *c == class) && *k == key && differs {
                        used[i] = true;
                    }
                }
            } else if differs {
                wrong.push(format!("{class}.{key}: reins {ours}, TRL {theirs}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} defaults differ from TRL 1.16:\n{}", wrong.len(), wrong.join("\n"));
    let stale: Vec<_> = DELIBERATE.iter().zip(&used).filter(|(_, u)| !**u).map(|(d, _)| d.1).collect();
    assert!(stale.is_empty(), "listed as deliberate but equal to TRL's default (or not shared): {stale:?}");
    println!("{shared} shared keys compared");
}

#[test]
fn deliberate_differences_are_documented() {
    let doc = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    for (class, key, _) in DELIBERATE {
        assert!(doc.contains(&format!("`{key}`")), "docs/config.md does not mention `{key}` ({class})");
    }
}
