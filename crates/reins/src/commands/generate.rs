//! `reins generate`: sample from a Hugging Face model, streaming text or writing JSONL.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use reins_data::records::Message;
use reins_data::tokenizer::HfTokenizer;
use reins_model::generate::{generate, Hooks};
use reins_model::{LoadOptions, Model, SamplingConfig};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// A Hugging Face model folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A prompt; repeat for several. Ignored when --prompts is given.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// A JSONL file with a `prompt` (string or message list) per line.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Wrap string prompts as a user message and apply the chat template.
    #[arg(long)]
    pub chat: bool,
    /// Write {"prompt", "completions": [...]} lines here (the format `reins feedback import`
    /// reads) instead of streaming text.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Completions per prompt.
    #[arg(long, default_value_t = 1)]
    pub num_return_sequences: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Take the most likely token (no sampling).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop a completion when its text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

/// A prompt as given (for the output) and as text to tokenize.
struct Prompt {
    original: Value,
    text: String,
}

fn read_prompts(args: &GenerateArgs, tok: &HfTokenizer) -> Result<Vec<Prompt>> {
    let to_text = |v: &Value| -> Result<String> {
        match v {
            Value::String(s) if args.chat => Ok(tok.apply_chat_template(&[Message::new("user", s.clone())], true)?),
            Value::String(s) => Ok(s.clone()),
            Value::Array(_) => {
                let msgs: Vec<Message> = serde_json::from_value(v.clone())
                    .context("a message-list prompt needs objects with `role` and `content`")?;
                Ok(tok.apply_chat_template(&msgs, true)?)
            }
            other => bail!("a prompt must be a string or a list of messages, not {other}"),
        }
    };
    let mut out = Vec::new();
    if let Some(path) = &args.prompts {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("{}: line {}: not valid JSON", path.display(), i + 1))?;
            let p = v.get("prompt").with_context(|| format!("{}: line {}: no `prompt` key", path.display(), i + 1))?;
            let text = to_text(p).with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            out.push(Prompt { original: p.clone(), text });
        }
    } else {
        for p in &args.prompt {
            let v = Value::String(p.clone());
            out.push(Prompt { text: to_text(&v)?, original: v });
        }
    }
    if out.is_empty() {
        bail!("no prompts: pass --prompt TEXT or --prompts FILE.jsonl");
    }
    Ok(out)
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let device = reins_model::default_device()?;
    let tok = HfTokenizer::from_dir(&args.model)?;
    let model = Model::load(&args.model, &device, &LoadOptions::default())?;
    let cfg = SamplingConfig {
        max_new_tokens: args.max_new_tokens,
        do_sample: !args.greedy,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        seed: args.seed,
        stop_on_eos: true,
    };
    cfg.validate()?;
    let prompts = read_prompts(&args, &tok)?;
    let stream = args.output.is_none() && prompts.len() * args.num_return_sequences == 1;
    let stop_test = |_: usize, ids: &[u32]| -> bool {
        !args.stop.is_empty()
            && tok.decode(ids, true).map(|t| args.stop.iter().any(|s| t.contains(s.as_str()))).unwrap_or(false)
    };
    let mut writer: Option<Box<dyn Write>> = match &args.output {
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))),
        None => None,
    };
    let mut seed = args.seed;
    for chunk in prompts.chunks(args.batch_size.max(1)) {
        let mut ids = Vec::new();
        for p in chunk {
            let enc = tok.encode(&p.text, true)?;
            for _ in 0..args.num_return_sequences {
                ids.push(enc.clone());
            }
        }
        let mut shown = String::new();
        let mut row0: Vec<u32> = Vec::new();
        let mut on_token = |r: usize, t: u32| {
            if stream && r == 0 {
                row0.push(t);
                if let Ok(text) = tok.decode(&row0, true) {
                    if let Some(delta) = text.strip_prefix(shown.as_str()) {
                        print!("{delta}");
                        let _ = std::io::stdout().flush();
                    }
                    shown = text;
                }
            }
        };
        let hooks = Hooks { stop: Some(&stop_test), on_token: Some(&mut on_token) };
        let gen = generate(&model, &ids, &SamplingConfig { seed, ..cfg.clone() }, hooks)?;
        seed = seed.wrapping_add(1);
        for (i, p) in chunk.iter().enumerate() {
            let rows = i * args.num_return_sequences..(i + 1) * args.num_return_sequences;
            let texts: Vec<String> = rows
                .map(|r| {
                    let mut text = tok.decode(&gen.tokens[r], true)?;
                    if let Some(cut) = args.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                        text.truncate(cut);
                    }
                    Ok(text)
                })
                .collect::<Result<_>>()?;
            match writer.as_mut() {
                Some(w) => writeln!(w, "{}", json!({"prompt": p.original, "completions": texts}))?,
                None if stream => println!(),
                None => {
                    for t in &texts {
                        println!("{}", json!({"prompt": p.original, "completion": t}));
                    }
                }
            }
        }
    }
    if let Some(mut w) = writer {
        w.flush()?;
    }
    Ok(())
}
