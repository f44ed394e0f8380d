//! Real-world chat-template constructs render as transformers renders them.

use reins_data::chat_template::ChatTemplate;
use reins_data::testing::fixtures_dir;
use reins_data::{HfTokenizer, Message};
use serde_json::json;

/// Qwen2.5's template (non-tool branch verbatim, tool branch shortened).
const QWEN: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {{- "# Tools\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"##;

/// Llama-3.1-style constructs: namespace-free `set`, `strftime_now`, `.strip()`, `| trim`,
/// `raise_exception`, `bos_token`.
const LLAMA: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception('Unknown role ' + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'].strip() + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

#[test]
fn qwen_template() {
    let t = ChatTemplate::new(QWEN).unwrap();
    let s = t.render(&[Message::user("Hi")], true, &json!({})).unwrap();
    assert_eq!(
        s,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let s = t
        .render(
            &[Message::new("system", "Be brief."), Message::user("Hi"), Message::assistant("Yo")],
            false,
            &json!({"tools": [{"function": {"name": "f"}, "type": "function"}]}),
        )
        .unwrap();
    assert_eq!(
        s,
        "<|im_start|>system\n# Tools\n<tools>\n{\"function\": {\"name\": \"f\"}, \"type\": \"function\"}\n</tools><|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    );
}

#[test]
fn llama_template() {
    let t = ChatTemplate::new(LLAMA).unwrap();
    let s = t
        .render(
            &[Message::new("system", " sys "), Message::user(" Hi ")],
            true,
            &json!({"bos_token": "<|begin_of_text|>", "date_string": "26 Jul 2024"}),
        )
        .unwrap();
    assert_eq!(
        s,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: 26 Jul 2024\n\nsys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let e = t.render(&[Message::new("tool", "x")], false, &json!({})).unwrap_err();
    assert!(e.to_string().contains("Unknown role tool"), "{e}");
    // strftime_now renders today's date when none is given.
    assert!(t.render(&[Message::user("x")], false, &json!({})).unwrap().contains("Today Date: "));
}

#[test]
fn every_fixture_folder_loads_with_the_same_behaviour() {
    let base = HfTokenizer::from_dir(fixtures_dir().join("tokenizer")).unwrap();
    let text = "Hello <|im_start|>user\nwörld<|im_end|>\n<|endoftext|>";
    for m in ["gpt2", "llama", "llama-rm", "qwen2"] {
        let t = HfTokenizer::from_dir(fixtures_dir().join("models").join(m)).unwrap();
        assert_eq!(t.encode(text, true).unwrap(), base.encode(text, true).unwrap(), "{m}");
        assert_eq!((t.eos_id(), t.pad_id(), t.vocab_size()), (Some(0), Some(3), 512), "{m}");
        assert!(t.has_chat_template(), "{m}");
    }
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<HfTokenizer>();
}

#[test]
fn truncation_saved_in_tokenizer_json_is_ignored_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures_dir().join("tokenizer");
    let mut tj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap()).unwrap();
    tj["truncation"] = json!({"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0});
    std::fs::write(dir.path().join("tokenizer.json"), tj.to_string()).unwrap();
    std::fs::copy(src.join("tokenizer_config.json"), dir.path().join("tokenizer_config.json")).unwrap();
    let t = HfTokenizer::from_dir(dir.path()).unwrap();
    let base = HfTokenizer::from_dir(&src).unwrap();
    let text = "a fairly long sentence that is more than four tokens";
    assert_eq!(t.encode(text, true).unwrap(), base.encode(text, true).unwrap());
    assert!(t.encode(text, true).unwrap().len() > 4);
}
