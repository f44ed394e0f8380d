//! One chat message with everything HF chat templates read from it: `role`, `content`, tool
//! calls and their results, and reasoning text.
//!
//! Templates branch on these fields (a tool-call turn often has no content at all; Qwen3
//! writes `reasoning_content` inside `<think>`), so dropping them silently changes what a
//! model is trained on. The optional fields are left out of JSON when empty, so a plain
//! message is still written as `{"role": ..., "content": ...}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message, as in HF chat templates: `{"role": "user", "content": "..."}`, plus
/// the optional keys of tool use and reasoning models.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MessageJson", into = "MessageJson")]
pub struct Message {
    pub role: String,
    /// The text of the message; empty when the source had none (see `content_is_null`).
    pub content: String,
    /// The source gave `content: null` or no `content` (OpenAI-style tool-call turns).
    /// Templates then see no `content` key, as transformers drops `None`-valued keys, and
    /// some templates (DeepSeek-V3, Phi-3.5) render that differently from `""`.
    pub content_is_null: bool,
    /// OpenAI-style calls, kept as given (`{"id", "type": "function", "function": {"name",
    /// "arguments"}}`): templates read `arguments` as a mapping (Llama 3) or a JSON string
    /// (DeepSeek-V3), and `tojson` must see its keys in the source's order.
    pub tool_calls: Vec<Value>,
    /// On a `tool` turn: the id of the call this result answers.
    pub tool_call_id: Option<String>,
    /// On a `tool` turn: the function's name (some templates also name other roles).
    pub name: Option<String>,
    /// The model's reasoning before its answer. Read from `reasoning_content`, `thinking`
    /// (GPT-OSS) or `reasoning`; templates see it under both `reasoning_content` and
    /// `thinking`, as transformers aliases them.
    pub reasoning_content: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), ..Self::default() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
    /// An assistant turn that only calls tools (`content: null`).
    pub fn assistant_tool_calls(calls: Vec<Value>) -> Self {
        Self { role: "assistant".into(), content_is_null: true, tool_calls: calls, ..Self::default() }
    }
    /// A `tool` turn: the result of call `tool_call_id`.
    pub fn tool(content: impl Into<String>, tool_call_id: impl Into<String>) -> Self {
        Self { tool_call_id: Some(tool_call_id.into()), ..Self::new("tool", content) }
    }
    /// The same message with reasoning text.
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning_content = Some(reasoning.into());
        self
    }
    /// True when the message carries nothing: no text, no tool call, no reasoning.
    pub fn is_empty(&self) -> bool {
        self.content.trim().is_empty()
            && self.tool_calls.is_empty()
            && self.reasoning_content.as_deref().is_none_or(|r| r.trim().is_empty())
    }

    /// The message as a chat template sees it, as transformers builds it: keys whose value
    /// would be `None` are absent, and reasoning appears as `thinking` (first) and
    /// `reasoning_content` (last).
    pub fn template_value(&self) -> Value {
        let mut o = Map::new();
        if let Some(r) = &self.reasoning_content {
            o.insert("thinking".into(), Value::String(r.clone()));
        }
        o.insert("role".into(), Value::String(self.role.clone()));
        if !self.content_is_null {
            o.insert("content".into(), Value::String(self.content.clone()));
        }
        if !self.tool_calls.is_empty() {
            o.insert("tool_calls".into(), Value::Array(self.tool_calls.clone()));
        }
        if let Some(id) = &self.tool_call_id {
            o.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        if let Some(n) = &self.name {
            o.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(r) = &self.reasoning_content {
            o.insert("reasoning_content".into(), Value::String(r.clone()));
        }
        Value::Object(o)
    }
}

/// The JSON shape of a message (TRL / OpenAI style).
#[derive(Serialize, Deserialize)]
struct MessageJson {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
}

impl From<MessageJson> for Message {
    fn from(m: MessageJson) -> Self {
        Self {
            role: m.role,
            content_is_null: m.content.is_none(),
            content: m.content.unwrap_or_default(),
            tool_calls: m.tool_calls.unwrap_or_default(),
            tool_call_id: m.tool_call_id,
            name: m.name,
            reasoning_content: m.reasoning_content,
        }
    }
}

impl From<Message> for MessageJson {
    fn from(m: Message) -> Self {
        Self {
            role: m.role,
            content: (!m.content_is_null).then_some(m.content),
            tool_calls: (!m.tool_calls.is_empty()).then_some(m.tool_calls),
            tool_call_id: m.tool_call_id,
            name: m.name,
            reasoning_content: m.reasoning_content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_messages_keep_their_json_shape() {
        let v = serde_json::to_value(Message::user("hi")).unwrap();
        assert_eq!(v, json!({"role": "user", "content": "hi"}));
        let back: Message = serde_json::from_value(v).unwrap();
        assert_eq!(back, Message::user("hi"));
    }

    #[test]
    fn tool_calls_and_reasoning_round_trip_through_json() {
        let call = json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"b": 1, "a": 2}}});
        let msgs = vec![
            Message::assistant_tool_calls(vec![call.clone()]),
            Message { name: Some("f".into()), ..Message::tool("3", "c1") },
            Message::assistant("3").with_reasoning("b + a"),
        ];
        let v = serde_json::to_value(&msgs).unwrap();
        assert_eq!(v[0], json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        assert_eq!(v[1], json!({"role": "tool", "content": "3", "tool_call_id": "c1", "name": "f"}));
        assert_eq!(v[2]["reasoning_content"], "b + a");
        let back: Vec<Message> = serde_json::from_value(v).unwrap();
        assert_eq!(back, msgs);
    }

    #[test]
    fn template_view_drops_null_content_and_aliases_reasoning() {
        let v = Message::assistant_tool_calls(vec![json!({"type": "function"})]).template_value();
        assert!(v.get("content").is_none(), "{v}");
        let v = Message::assistant("4").with_reasoning("2+2").template_value();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["thinking", "role", "content", "reasoning_content"]);
    }

    #[test]
    fn a_tool_call_turn_is_not_empty() {
        assert!(Message::assistant(" ").is_empty());
        assert!(!Message::assistant_tool_calls(vec![json!({})]).is_empty());
        assert!(!Message::assistant("").with_reasoning("hmm").is_empty());
    }
}
