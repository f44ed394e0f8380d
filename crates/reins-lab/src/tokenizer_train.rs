//! A byte-level BPE tokenizer trained on the world's corpus with the `tokenizers` crate, saved
//! as a Hugging Face tokenizer folder (`tokenizer.json`, `tokenizer_config.json`,
//! `special_tokens_map.json`) so the model stack loads it like any HF checkpoint.
//!
//! Special tokens take ids 0..=4 in `chat::SPECIAL_TOKENS` order: `<|endoftext|>`, `<|pad|>`,
//! `<|user|>`, `<|assistant|>`, `<|end|>` (the `eos_token`).

use std::collections::HashSet;
use std::path::Path;

use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TokenizerImpl,
};

use crate::chat;
use crate::config::TokenizerConfig;
use crate::LabError;

fn tok_err(e: impl std::fmt::Display) -> LabError {
    LabError::Tokenizer(e.to_string())
}

/// Trains byte-level BPE (GPT-2 style pre-tokenization, no prefix space) on `texts`.
/// Deterministic: the same texts and config give the same `tokenizer.json`.
pub fn train_tokenizer<I, S>(texts: I, cfg: &TokenizerConfig) -> Result<Tokenizer, LabError>
where
    I: IntoIterator<Item = S>,
    I::IntoIter: Send,
    S: AsRef<str> + Send,
{
    let special: Vec<AddedToken> = chat::SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(cfg.vocab_size)
        .min_frequency(cfg.min_frequency)
        .special_tokens(special.clone())
        .initial_alphabet(alphabet)
        .show_progress(false)
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok: TokenizerImpl<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper> =
        TokenizerImpl::new(BPE::default());
    tok.with_pre_tokenizer(Some(byte_level)).with_post_processor(Some(byte_level)).with_decoder(Some(byte_level));
    tok.train(&mut trainer, texts.into_iter()).map_err(tok_err)?;
    tok.add_special_tokens(special).map_err(tok_err)?;
    Ok(Tokenizer::from(tok))
}

/// Writes `tokenizer.json`, `tokenizer_config.json` (eos `<|end|>`, pad `<|pad|>`, the chat
/// template) and `special_tokens_map.json` into `dir` (created if missing).
pub fn save_hf_folder(tok: &Tokenizer, dir: &Path, model_max_length: usize) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating", dir, e))?;
    tok.save(dir.join("tokenizer.json"), true).map_err(tok_err)?;
    let mut added = serde_json::Map::new();
    for t in chat::SPECIAL_TOKENS {
        let id = tok
            .token_to_id(t)
            .ok_or_else(|| LabError::Tokenizer(format!("special token {t} missing after training")))?;
        added.insert(
            id.to_string(),
            serde_json::json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                               "single_word": false, "special": true}),
        );
    }
    let config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": null,
        "eos_token": chat::END,
        "pad_token": chat::PAD,
        "unk_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": model_max_length,
        "padding_side": "left",
        "chat_template": chat::JINJA_TEMPLATE,
    });
    let map = serde_json::json!({
        "eos_token": chat::END,
        "pad_token": chat::PAD,
        "additional_special_tokens": [chat::ENDOFTEXT, chat::USER, chat::ASSISTANT],
    });
    for (name, v) in [("tokenizer_config.json", config), ("special_tokens_map.json", map)] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&v).expect("json values serialize");
        std::fs::write(&path, text).map_err(|e| LabError::io("writing", &path, e))?;
    }
    Ok(())
}

/// The lab's tokenizer stage: trains on `cfg.tokenizer.n_texts` corpus texts of `world` and
/// saves the HF folder into `dir` (the lead caches it under `cache_dir`).
pub fn train_and_save(world: &crate::World, cfg: &crate::LabConfig, dir: &Path) -> Result<Tokenizer, LabError> {
    let corpus = world.corpus(cfg.tokenizer.n_texts, 0);
    let tok = train_tokenizer(corpus.pretrain.iter(), &cfg.tokenizer)?;
    save_hf_folder(&tok, dir, cfg.model.max_position_embeddings)?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::World;

    fn corpus() -> Vec<String> {
        let w = World::new(0, &Default::default()).unwrap();
        let c = w.corpus(3000, 0);
        c.pretrain
    }

    #[test]
    fn trains_deterministically_with_special_tokens_first() {
        let texts = corpus();
        let cfg = TokenizerConfig::default();
        let a = train_tokenizer(texts.iter(), &cfg).unwrap();
        let b = train_tokenizer(texts.iter(), &cfg).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        for (i, t) in chat::SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(a.token_to_id(t), Some(i as u32), "{t}");
        }
        let v = a.get_vocab_size(true);
        assert!(v <= cfg.vocab_size && v > 400, "{v}");
        let text = &texts[0];
        let enc = a.encode(text.as_str(), false).unwrap();
        assert_eq!(enc.get_ids()[0], 2, "<|user|> is one token");
        assert_eq!(*enc.get_ids().last().unwrap(), 4, "<|end|> is one token");
        assert!(enc.len() < 48, "{} tokens for {text}", enc.len());
        assert_eq!(a.decode(enc.get_ids(), false).unwrap(), *text);
        // Unseen text still round-trips (byte-level).
        let odd = "Zürich? 123456 ~";
        let ids = a.encode(odd, false).unwrap().get_ids().to_vec();
        assert_eq!(a.decode(&ids, false).unwrap(), odd);
    }

    #[test]
    fn saves_a_folder_the_model_stack_can_load() {
        let tok = train_tokenizer(corpus().iter(), &TokenizerConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_hf_folder(&tok, dir.path(), 96).unwrap();
        let back = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let s = chat::full("What is 2 + 3?", "It is 5.");
        assert_eq!(back.encode(s.as_str(), false).unwrap().get_ids(), tok.encode(s.as_str(), false).unwrap().get_ids());
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(cfg["eos_token"], "<|end|>");
        assert_eq!(cfg["pad_token"], "<|pad|>");
        assert_eq!(cfg["added_tokens_decoder"]["4"]["content"], "<|end|>");
        assert!(dir.path().join("special_tokens_map.json").exists());
    }

    #[test]
    fn completions_fit_the_default_generation_budget() {
        let w = World::new(0, &Default::default()).unwrap();
        let c = w.corpus(3000, 2000);
        let tok = train_tokenizer(c.pretrain.iter(), &TokenizerConfig::default()).unwrap();
        let lens: Vec<usize> =
            c.sft.iter().map(|e| tok.encode(chat::completion(&e.response), false).unwrap().len()).collect();
        let max = *lens.iter().max().unwrap();
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        let full_max = c.pretrain.iter().map(|t| tok.encode(t.as_str(), false).unwrap().len()).max().unwrap();
        println!("completion tokens: mean {mean:.1}, max {max}; full text max {full_max}");
        let defaults = crate::LabConfig::default();
        assert!(max <= defaults.pairs.max_new_tokens, "{max}");
        assert!(full_max <= defaults.model.max_position_embeddings, "{full_max}");
    }
}
