//! Tokenization and collation equal TRL 1.16's batches in `fixtures/hf/trl/*.safetensors`.

use reins_data::collate::{collate_preference, collate_reward, collate_sft};
use reins_data::formats::{convert_row, ConvertOptions, Format, Out};
use reins_data::testing::fixtures_dir;
use reins_data::tokenize::preference::{tokenize_preference_dataset, PreferenceOptions};
use reins_data::tokenize::reward::{tokenize_reward_dataset, RewardOptions};
use reins_data::tokenize::sft::{tokenize_sft_dataset, SftOptions};
use reins_data::tokenize::TruncationMode;
use reins_data::{HfTokenizer, Record};
use serde_json::Value;

fn tokenizer() -> HfTokenizer {
    HfTokenizer::from_dir(fixtures_dir().join("tokenizer")).expect("fixture tokenizer")
}

/// `name` → rows of i64 from a TRL batch file.
fn batch(file: &str, name: &str) -> Vec<Vec<i64>> {
    let bytes = std::fs::read(fixtures_dir().join("trl").join(file)).expect("batch file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st.tensor(name).expect("tensor");
    assert_eq!(t.dtype(), safetensors::Dtype::I64);
    let (rows, cols) = (t.shape()[0], t.shape()[1]);
    let vals: Vec<i64> = t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
    (0..rows).map(|r| vals[r * cols..(r + 1) * cols].to_vec()).collect()
}

fn as_i64<T: Copy + Into<i64>>(rows: &[Vec<T>]) -> Vec<Vec<i64>> {
    rows.iter().map(|r| r.iter().map(|&x| x.into()).collect()).collect()
}

/// The `key` data of `fixtures/hf/trl/{file}` as records, via the TRL reader.
fn records(file: &str, key: &str) -> Vec<Record> {
    let text = std::fs::read_to_string(fixtures_dir().join("trl").join(file)).expect("json");
    let v: Value = serde_json::from_str(&text).expect("json");
    let mut out = Out::default();
    for row in v[key].as_array().expect("data") {
        convert_row(Format::Trl, row.as_object().expect("object"), 1, &ConvertOptions::default(), &mut out)
            .expect("row converts");
    }
    out.records
}

fn check_dpo(data_key: &str, batch_file: &str) {
    let tok = tokenizer();
    let recs = records("dpo.json", data_key);
    assert_eq!(recs.len(), 4);
    let (ids, stats) = tokenize_preference_dataset(&tok, &recs, &PreferenceOptions::default()).expect("tokenize");
    assert_eq!(stats.kept, 4);
    let pad = tok.pad_id_or_eos().expect("pad");
    let b = collate_preference(&ids, pad, Some(1024), TruncationMode::KeepStart, None);
    assert_eq!(as_i64(&b.input_ids), batch(batch_file, "input_ids"), "input_ids");
    assert_eq!(as_i64(&b.attention_mask), batch(batch_file, "attention_mask"), "attention_mask");
    assert_eq!(as_i64(&b.completion_mask), batch(batch_file, "completion_mask"), "completion_mask");
}

#[test]
fn dpo_standard_batch_equals_trl() {
    check_dpo("data", "dpo_batch.safetensors");
}

#[test]
fn dpo_conversational_batch_equals_trl() {
    check_dpo("conversational_data", "dpo_batch_conversational.safetensors");
}

#[test]
fn reward_batch_equals_trl() {
    let tok = tokenizer();
    let recs = records("reward.json", "data");
    let (ids, stats) = tokenize_reward_dataset(&tok, &recs, &RewardOptions::default()).expect("tokenize");
    assert_eq!(stats.kept, 4);
    let b = collate_reward(&ids, tok.pad_id_or_eos().expect("pad"), None);
    assert_eq!(as_i64(&b.input_ids), batch("reward_batch.safetensors", "input_ids"));
    assert_eq!(as_i64(&b.attention_mask), batch("reward_batch.safetensors", "attention_mask"));
}

#[test]
fn sft_batch_equals_trl() {
    let tok = tokenizer();
    let recs = records("sft.json", "data");
    let (ids, stats) = tokenize_sft_dataset(&tok, &recs, &SftOptions::default(), false).expect("tokenize");
    assert_eq!(stats.kept, 4);
    let b = collate_sft(&ids, tok.pad_id_or_eos().expect("pad"), None);
    assert_eq!(as_i64(&b.input_ids), batch("sft_batch.safetensors", "input_ids"));
    assert_eq!(as_i64(&b.attention_mask.expect("mask")), batch("sft_batch.safetensors", "attention_mask"));
    assert_eq!(b.labels, batch("sft_batch.safetensors", "labels"));
}

#[test]
fn model_folders_share_the_tokenizer_and_template() {
    let a = tokenizer();
    let b = HfTokenizer::from_dir(fixtures_dir().join("models/llama")).expect("llama tokenizer");
    let text = "\n\nHuman: Hi\n\nAssistant: Hello<|endoftext|>";
    assert_eq!(a.encode(text, true).unwrap(), b.encode(text, true).unwrap());
    assert_eq!(a.eos_id(), Some(0));
    assert_eq!(a.pad_id(), Some(3));
    assert_eq!(a.bos_id(), None);
    assert_eq!(a.token_to_id("<|im_start|>"), Some(1));
    let ids = a.encode(text, true).unwrap();
    assert_eq!(a.decode(&ids, false).unwrap(), text);
    assert_eq!(a.decode(&ids, true).unwrap(), "\n\nHuman: Hi\n\nAssistant: Hello");
    let msgs = [reins_data::Message::user("Hi")];
    assert_eq!(a.apply_chat_template(&msgs, true).unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn chat_template_from_tokenizer_config_and_missing_template_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures_dir().join("tokenizer");
    std::fs::copy(src.join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    // No template anywhere: a clear error naming the folder.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": {"content": "<|endoftext|>", "special": true}, "pad_token": null}"#,
    )
    .unwrap();
    let tok = HfTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tok.eos_id(), Some(0));
    assert_eq!(tok.pad_id_or_eos(), Some(0));
    let err = tok.apply_chat_template(&[reins_data::Message::user("x")], true).unwrap_err().to_string();
    assert!(err.contains(&dir.path().display().to_string()) && err.contains("chat_template.jinja"), "{err}");
    // The older spelling: `chat_template` inside tokenizer_config.json, with a Python method.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|endoftext|>", "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'].strip() }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}"}"#,
    )
    .unwrap();
    let tok = HfTokenizer::from_dir(dir.path()).unwrap();
    let s = tok.apply_chat_template(&[reins_data::Message::user("  hi  ")], true).unwrap();
    assert_eq!(s, "[user] hi\n[assistant]<|endoftext|>");
}
