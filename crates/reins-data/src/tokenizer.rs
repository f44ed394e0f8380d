//! [`HfTokenizer`]: a HF tokenizer folder (`tokenizer.json`, `tokenizer_config.json`,
//! `chat_template.jinja`) as one value: encode/decode, special tokens, chat template.
//!
//! ```no_run
//! use reins_data::tokenizer::HfTokenizer;
//! use reins_data::records::Message;
//! let tok = HfTokenizer::from_dir("fixtures/hf/tokenizer")?;
//! let ids = tok.encode("Hello", true)?;
//! let text = tok.apply_chat_template(&[Message::user("Hi")], true)?;
//! let eos = tok.eos_id();
//! # Ok::<(), reins_data::DataError>(())
//! ```

use crate::chat_template::ChatTemplate;
use crate::error::{io_err, DataError, Result};
use crate::records::Message;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Special tokens as `tokenizer_config.json` names them (strings or `{"content": ...}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
}

/// A HF tokenizer with its chat template and special tokens.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    dir: PathBuf,
    template: Option<ChatTemplate>,
    special: SpecialTokens,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("dir", &self.dir)
            .field("special", &self.special)
            .field("has_chat_template", &self.template.is_some())
            .finish()
    }
}

fn token_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The template from `tokenizer_config.json`'s `chat_template`: a string, or a list of
/// `{name, template}` (the one named `default` is used).
fn template_from_config(cfg: &Value) -> Option<String> {
    match cfg.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
            };
            named("default")
                .or_else(|| list.first().and_then(|t| t.get("template")).and_then(Value::as_str))
                .map(str::to_string)
        }
        _ => None,
    }
}

impl HfTokenizer {
    /// Load `dir/tokenizer.json`, the special tokens of `dir/tokenizer_config.json` (if
    /// present) and the chat template from `dir/chat_template.jinja` or the config's
    /// `chat_template` key (the `.jinja` file wins, as in transformers 5).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tj = dir.join("tokenizer.json");
        if !tj.exists() {
            return Err(DataError::Tokenizer {
                path: tj,
                message: "not found; reins needs a HF *fast* tokenizer file (`tokenizer.json`). Save it with `AutoTokenizer.from_pretrained(...).save_pretrained(dir)`".into(),
            });
        }
        let mut inner = tokenizers::Tokenizer::from_file(&tj)
            .map_err(|e| DataError::Tokenizer { path: tj.clone(), message: format!("could not load: {e}") })?;
        // transformers turns off the truncation/padding saved in tokenizer.json for a plain
        // `tokenizer(text)` call; so do we, or long texts would be cut silently.
        inner
            .with_truncation(None)
            .map_err(|e| DataError::Tokenizer {
                path: tj.clone(),
                message: format!("could not turn off truncation: {e}"),
            })?
            .with_padding(None);
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
            serde_json::from_str(&text)
                .map_err(|e| DataError::Tokenizer { path: cfg_path.clone(), message: format!("not valid JSON: {e}") })?
        } else {
            Value::Null
        };
        let special = SpecialTokens {
            bos: token_str(cfg.get("bos_token")),
            eos: token_str(cfg.get("eos_token")),
            pad: token_str(cfg.get("pad_token")),
            unk: token_str(cfg.get("unk_token")),
        };
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.exists() {
            Some(std::fs::read_to_string(&jinja).map_err(io_err(&jinja))?)
        } else if let Some(s) = template_from_config(&cfg) {
            Some(s)
        } else {
            let cj = dir.join("chat_template.json");
            if cj.exists() {
                let text = std::fs::read_to_string(&cj).map_err(io_err(&cj))?;
                serde_json::from_str::<Value>(&text).ok().as_ref().and_then(template_from_config)
            } else {
                None
            }
        };
        let template = source.map(|s| ChatTemplate::new(&s)).transpose()?;
        Ok(Self { inner, dir: dir.to_path_buf(), template, special })
    }

    /// Replace the chat template (e.g. one given on the command line).
    pub fn set_chat_template(&mut self, source: &str) -> Result<()> {
        self.template = Some(ChatTemplate::new(source)?);
        Ok(())
    }

    /// The folder this tokenizer was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The underlying `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor
    /// (e.g. a BOS), as `tokenizer(text)` does in transformers; special-token strings inside
    /// `text` (like `<|endoftext|>`) always map to their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DataError::Tokenizer { path: self.dir.clone(), message: format!("encode failed: {e}") })
    }

    /// Text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| DataError::Tokenizer { path: self.dir.clone(), message: format!("decode failed: {e}") })
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The chat template, or an error naming the folder and what to do.
    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.template.as_ref().ok_or_else(|| DataError::MissingChatTemplate { dir: self.dir.clone() })
    }

    /// Render `messages` with the chat template, with the special tokens (`bos_token`,
    /// `eos_token`, `pad_token`, `unk_token`) in the context, as transformers does.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.apply_chat_template_with(messages, add_generation_prompt, &Value::Null)
    }

    /// [`Self::apply_chat_template`] with extra template variables (`tools`, ...): a JSON object.
    pub fn apply_chat_template_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &Value,
    ) -> Result<String> {
        let mut ctx = serde_json::Map::new();
        for (k, v) in [
            ("bos_token", &self.special.bos),
            ("eos_token", &self.special.eos),
            ("pad_token", &self.special.pad),
            ("unk_token", &self.special.unk),
        ] {
            if let Some(v) = v {
                ctx.insert(k.into(), Value::String(v.clone()));
            }
        }
        if let Value::Object(o) = extra {
            ctx.extend(o.clone());
        }
        self.chat_template()?.render(messages, add_generation_prompt, &Value::Object(ctx))
    }

    /// Token ids of the rendered chat, without adding special tokens again (the template
    /// writes them), as `apply_chat_template(tokenize=True)` does.
    pub fn encode_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// The EOS string from `tokenizer_config.json`.
    pub fn eos_token(&self) -> Option<&str> {
        self.special.eos.as_deref()
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos.as_deref().and_then(|t| self.token_to_id(t))
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos.as_deref().and_then(|t| self.token_to_id(t))
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad.as_deref().and_then(|t| self.token_to_id(t))
    }
    /// The pad id TRL uses: `pad_token`, else `eos_token`.
    pub fn pad_id_or_eos(&self) -> Option<u32> {
        self.pad_id().or_else(|| self.eos_id())
    }
}
