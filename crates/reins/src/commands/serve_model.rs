//! `reins serve-model --model DIR`: an OpenAI-compatible inference server for a Hugging Face
//! model folder (a base model, or any checkpoint reins wrote), so that clients and tools that
//! speak the OpenAI API — and, later, reins' own trainers — can sample from it.
//!
//! Endpoints: `GET /v1/models`; `POST /v1/completions` (`prompt`: a string, a list of strings,
//! token ids or a list of token-id lists; `return_token_ids: true` adds each choice's
//! `token_ids`, as vLLM);
//! `POST /v1/chat/completions` (`messages`, rendered with the model's chat template and its
//! generation prompt). Both take `max_tokens` (default 16, as OpenAI's completions), `temperature`
//! (default 1; 0 is greedy), `top_p`, `n`, `seed` and `stop` (a string or a list; the reply ends
//! before it, as OpenAI's), and `stream: true` for server-sent events ending in `data: [DONE]`.
//! Other request fields are accepted and ignored. Bad values get a 400 with OpenAI's error
//! shape.
//!
//! `logprobs: 0` on `/v1/completions` adds each choice's `logprobs` (`tokens`, `token_logprobs`:
//! each sampled token's log-prob under the sampling distribution, OpenAI's shape), which a
//! trainer's importance-sampling correction reads.
//!
//! `POST /v1/load_lora_adapter` (`{"lora_name", "lora_path"}`, vLLM's) puts a PEFT adapter
//! folder on the base model; later requests sample from base + adapter, so a trainer can push
//! its LoRA weights each step. `POST /update_weights_from_disk` (`{"model_path"}`, SGLang's)
//! replaces the weights with a model folder's of the same architecture: a trainer without LoRA
//! pushes its full weights that way.
//!
//! Requests are sampled with the KV-cache sampler, batched across requests: a scheduler thread
//! owns the model, and concurrent requests with the same sampling settings (temperature,
//! `top_p`, greedy or not; `max_tokens`, `seed`, `n` and `stop` may differ) are merged into one
//! generation call of up to `--max-batch-rows` rows, gathered for `--batch-wait-ms` after the
//! first one or while the previous batch runs (the rule in full is in
//! `serve_model/scheduler.rs`). Each row draws from its own random stream named by its
//! request's seed and its row in the request, so a seeded request gets the same tokens however
//! it is batched: the in-process sampler's, for the same rows and seed (up to the float rounding
//! of a longer left padding). A request without a `seed` gets a random one. Every reply says how
//! it was batched in the headers `x-reins-batch-rows` and `x-reins-batch-requests` (rows and
//! requests in its generation call). A pushed LoRA adapter is applied between batches.

mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reins_data::tokenize::tokenize_prompt;
use reins_data::{HfTokenizer, Message, Text};
use reins_model::generate::Finish;
use reins_model::{LoadOptions, Model, SamplingConfig};
use scheduler::{Job, Limits, Scheduler, Update};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct ServeModelArgs {
    /// The model folder (config.json, weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// The model's name in the API (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, default_value_t = 2048)]
    max_tokens_limit: usize,
    /// Most rows (prompts times `n`, over all merged requests) in one generation call; a single
    /// request with more rows runs alone.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch_rows: u64,
    /// How long, in milliseconds, a batch waits after its first request for others to join
    /// (0: only requests that queued while the previous batch ran).
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,
}

struct Server {
    /// The weights as loaded, without adapters.
    base: std::sync::RwLock<Model>,
    /// The thread that owns the model requests sample from (base, or base + the last loaded
    /// adapter) and batches them.
    scheduler: Scheduler,
    tok: Arc<HfTokenizer>,
    name: String,
    max_tokens_limit: usize,
    next_id: std::sync::atomic::AtomicU64,
}

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The sampling fields both endpoints share.
#[derive(Deserialize)]
struct Sampling {
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<usize>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stream: bool,
}

/// A completion prompt: text or token ids, one or many.
#[derive(Deserialize)]
#[serde(untagged)]
enum PromptField {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: PromptField,
    #[serde(default)]
    return_token_ids: bool,
    /// OpenAI's `logprobs`: 0 adds each sampled token's log-prob (no alternatives).
    #[serde(default)]
    logprobs: Option<u32>,
    #[serde(flatten)]
    sampling: Sampling,
}

#[derive(Deserialize)]
struct LoadAdapter {
    lora_name: String,
    lora_path: PathBuf,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// An OpenAI-style error reply.
struct ApiError(StatusCode, String, Option<&'static str>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"message": self.1, "type": "invalid_request_error", "param": self.2, "code": null}});
        (self.0, Json(body)).into_response()
    }
}

fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into(), Some(param))
}

/// A request's settings, checked.
struct Plan {
    rows: Vec<Vec<u32>>,
    n: usize,
    sampling: SamplingConfig,
    stop: Vec<String>,
    stream: bool,
}

impl Server {
    fn plan(&self, prompts: Vec<Vec<u32>>, s: Sampling) -> Result<Plan, ApiError> {
        let max_tokens = s.max_completion_tokens.or(s.max_tokens).unwrap_or(16);
        if max_tokens == 0 || max_tokens > self.max_tokens_limit {
            return Err(bad("max_tokens", format!("max_tokens must be in 1..={}", self.max_tokens_limit)));
        }
        let n = s.n.unwrap_or(1);
        if !(1..=64).contains(&n) {
            return Err(bad("n", "n must be in 1..=64"));
        }
        let temperature = s.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && (0.0..=100.0).contains(&temperature)) {
            return Err(bad("temperature", "temperature must be a number in [0, 100] (0 is greedy)"));
        }
        let top_p = s.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad("top_p", "top_p must be in (0, 1]"));
        }
        let stop = s.stop.map(OneOrMany::into_vec).unwrap_or_default();
        if stop.iter().any(String::is_empty) || stop.len() > 4 {
            return Err(bad("stop", "stop takes up to 4 non-empty strings"));
        }
        if s.stream && !stop.is_empty() {
            return Err(bad("stop", "stop strings are not supported with stream = true yet"));
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(bad("prompt", "a prompt encodes to no tokens"));
        }
        let sampling = SamplingConfig {
            max_new_tokens: max_tokens,
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            top_p,
            seed: s.seed.unwrap_or_else(rand::random),
            ..Default::default()
        };
        let rows = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), n)).collect();
        Ok(Plan { rows, n, sampling, stop, stream: s.stream })
    }

    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("generation failed: {e}"), None)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Eos | Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn models(State(s): State<Arc<Server>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": s.name, "object": "model", "created": 0, "owned_by": "reins"}]}))
}

/// Parses a JSON body, turning serde's message into a 400.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid request: {e}"), None))
}

async fn completions(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(&body)?;
    let encode = |p: &str| s.tok.encode(p, true).map_err(|e| bad("prompt", e.to_string()));
    let ids = match req.prompt {
        PromptField::Text(p) => vec![encode(&p)?],
        PromptField::Texts(ps) => ps.iter().map(|p| encode(p)).collect::<Result<_, _>>()?,
        PromptField::Ids(ids) => vec![ids],
        PromptField::IdLists(ids) => ids,
    };
    let vocab = s.base.read().unwrap_or_else(|e| e.into_inner()).config.vocab_size as u32;
    if ids.iter().flatten().any(|&t| t >= vocab) {
        return Err(bad("prompt", format!("a token id is not below the vocabulary size {vocab}")));
    }
    let logprobs = match req.logprobs {
        None => false,
        Some(0) => true,
        Some(k) => {
            return Err(bad(
                "logprobs",
                format!("logprobs = {k}: only 0 is served (each sampled token's log-prob, no alternatives)"),
            ))
        }
    };
    let plan = s.plan(ids, req.sampling)?;
    if logprobs && plan.stream {
        return Err(bad("logprobs", "logprobs are not streamed; ask without stream"));
    }
    respond(s, plan, "text_completion", req.return_token_ids, logprobs).await
}

async fn chat(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    if req.messages.is_empty() {
        return Err(bad("messages", "messages must not be empty"));
    }
    let ids = tokenize_prompt(&s.tok, &Text::Chat(req.messages)).map_err(|e| bad("messages", e.to_string()))?;
    let plan = s.plan(vec![ids], req.sampling)?;
    respond(s, plan, "chat.completion", false, false).await
}

/// vLLM's `/v1/load_lora_adapter`: base + the adapter in `lora_path` serves from now on (from
/// the next batch: a running one finishes on the weights it started with).
async fn load_adapter(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: LoadAdapter = parse(&body)?;
    let server = s.clone();
    let name = req.lora_name.clone();
    let model = tokio::task::spawn_blocking(move || -> Result<Model, ApiError> {
        let mut m = server.base.read().unwrap_or_else(|e| e.into_inner()).clone();
        m.load_adapter(&req.lora_path, false)
            .map_err(|e| bad("lora_path", format!("{}: {e}", req.lora_path.display())))?;
        Ok(m)
    })
    .await
    .map_err(internal)??;
    s.scheduler.swap(model).map_err(internal)?.await.map_err(internal)?;
    Ok(format!("Success: LoRA adapter '{name}' added successfully.").into_response())
}

#[derive(Deserialize)]
struct UpdateWeights {
    model_path: PathBuf,
}

/// SGLang's `/update_weights_from_disk` (`{"model_path"}`): the weights of a model folder with
/// the same architecture replace the served ones from the next batch on (LoRA adapters loaded
/// later go on top of them). A trainer without LoRA pushes its full weights this way.
async fn update_weights(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: UpdateWeights = parse(&body)?;
    let server = s.clone();
    let model = tokio::task::spawn_blocking(move || -> Result<Model, ApiError> {
        let base = server.base.read().unwrap_or_else(|e| e.into_inner());
        let p = &req.model_path;
        let m = Model::load(p, base.device(), &LoadOptions::default())
            .map_err(|e| bad("model_path", format!("{}: {e}", p.display())))?;
        let (a, b) = (&m.config, &base.config);
        if (a.arch, a.vocab_size, a.hidden_size, a.num_hidden_layers)
            != (b.arch, b.vocab_size, b.hidden_size, b.num_hidden_layers)
        {
            return Err(bad(
                "model_path",
                format!("{}: another architecture than the served model; start a server for it", p.display()),
            ));
        }
        Ok(m)
    })
    .await
    .map_err(internal)??;
    *s.base.write().unwrap_or_else(|e| e.into_inner()) = model.clone();
    s.scheduler.swap(model).map_err(internal)?.await.map_err(internal)?;
    Ok(Json(json!({"success": true, "message": "Succeeded to update model weights."})).into_response())
}

/// Samples `plan` and replies in `object`'s shape, whole or streamed, with the batch it was
/// sampled in as `x-reins-batch-rows` / `x-reins-batch-requests` headers.
async fn respond(
    s: Arc<Server>,
    plan: Plan,
    object: &'static str,
    token_ids: bool,
    logprobs: bool,
) -> Result<Response, ApiError> {
    let chat = object == "chat.completion";
    let id = s.id(if chat { "chatcmpl" } else { "cmpl" });
    let (created, name) = (now(), s.name.clone());
    let prompt_tokens: usize = plan.rows.iter().step_by(plan.n).map(Vec::len).sum();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = plan.stop.clone();
    s.scheduler
        .submit(Job { rows: plan.rows, sampling: plan.sampling, stop: plan.stop, stream: plan.stream, reply: tx })
        .map_err(internal)?;
    let batch = match rx.recv().await {
        Some(Update::Started { rows, requests }) => [
            (HeaderName::from_static("x-reins-batch-rows"), HeaderValue::from(rows)),
            (HeaderName::from_static("x-reins-batch-requests"), HeaderValue::from(requests)),
        ],
        Some(Update::Done(Err(e))) => return Err(internal(e)),
        _ => return Err(internal("the sampling thread stopped before the batch started")),
    };
    if plan.stream {
        return Ok((batch, stream(s, rx, id, created, chat)).into_response());
    }
    let rows = loop {
        match rx.recv().await {
            Some(Update::Done(r)) => break r.map_err(internal)?,
            Some(_) => {}
            None => return Err(internal("the sampling thread stopped mid-batch")),
        }
    };
    let completion_tokens: usize = rows.iter().map(|(ids, _, _)| ids.len()).sum();
    let choices: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (ids, lps, finish))| {
            // OpenAI's completions `logprobs`: the sampled tokens and their log-probs.
            let logprobs = if logprobs {
                let tokens: Vec<String> = ids.iter().map(|&t| s.tok.decode(&[t], false).unwrap_or_default()).collect();
                json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": null, "text_offset": null})
            } else {
                Value::Null
            };
            let mut text = s.tok.decode(&ids, true).unwrap_or_default();
            if let Some(at) = scheduler::stop_at(&s.tok, &stop, &ids) {
                text.truncate(at);
            }
            let reason = finish_reason(finish);
            if chat {
                json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason})
            } else if token_ids {
                json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": reason, "token_ids": ids})
            } else {
                json!({"index": i, "text": text, "logprobs": logprobs, "finish_reason": reason})
            }
        })
        .collect();
    let body = json!({
        "id": id, "object": object, "created": created, "model": name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    });
    Ok((batch, Json(body)).into_response())
}

/// Server-sent events from a request's updates: one chunk per new piece of text of each choice,
/// then each choice's finish reason, then `[DONE]`.
fn stream(
    s: Arc<Server>,
    mut updates: tokio::sync::mpsc::UnboundedReceiver<Update>,
    id: String,
    created: u64,
    chat: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let name = s.name.clone();
    let object = if chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = move |index: usize, text: &str, reason: Option<&str>| -> Value {
        let choice = if chat {
            let delta = if reason.is_some() { json!({}) } else { json!({"content": text}) };
            json!({"index": index, "delta": delta, "finish_reason": reason})
        } else {
            json!({"index": index, "text": text, "logprobs": null, "finish_reason": reason})
        };
        json!({"id": id, "object": object, "created": created, "model": name, "choices": [choice]})
    };
    tokio::spawn(async move {
        let (mut ids, mut sent) = (Vec::<Vec<u32>>::new(), Vec::<String>::new());
        while let Some(u) = updates.recv().await {
            match u {
                Update::Started { .. } => {}
                Update::Token { row, id } => {
                    if ids.len() <= row {
                        ids.resize(row + 1, Vec::new());
                        sent.resize(row + 1, String::new());
                    }
                    ids[row].push(id);
                    let text = s.tok.decode(&ids[row], true).unwrap_or_default();
                    // Emit only whole new characters: a multi-byte piece may complete later.
                    if text.len() > sent[row].len()
                        && text.starts_with(sent[row].as_str())
                        && !text.ends_with('\u{fffd}')
                    {
                        let delta = text[sent[row].len()..].to_string();
                        sent[row] = text;
                        let _ = tx.send(chunk(row, &delta, None));
                    }
                }
                Update::Done(Ok(rows)) => {
                    for (row, (_, _, f)) in rows.iter().enumerate() {
                        let _ = tx.send(chunk(row, "", Some(finish_reason(*f))));
                    }
                }
                Update::Done(Err(e)) => {
                    let _ = tx
                        .send(json!({"error": {"message": format!("generation failed: {e}"), "type": "server_error"}}));
                }
            }
        }
    });
    let events = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(v) => Some((Ok(Event::default().data(v.to_string())), (rx, false))),
            None => Some((Ok(Event::default().data("[DONE]")), (rx, true))),
        }
    });
    Sse::new(events)
}

pub fn run(a: ServeModelArgs) -> Result<()> {
    let device = reins_model::default_device()?;
    let model = Model::load(&a.model, &device, &LoadOptions::default())
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    let tok = HfTokenizer::from_dir(&a.model).with_context(|| format!("tokenizer of {}", a.model.display()))?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
    });
    let tok = Arc::new(tok);
    let limits = Limits {
        max_batch_rows: usize::try_from(a.max_batch_rows).unwrap_or(usize::MAX),
        batch_wait: Duration::from_millis(a.batch_wait_ms),
    };
    let server = Arc::new(Server {
        base: std::sync::RwLock::new(model.clone()),
        scheduler: Scheduler::start(model, tok.clone(), limits),
        tok,
        name,
        max_tokens_limit: a.max_tokens_limit,
        next_id: std::sync::atomic::AtomicU64::new(1),
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/load_lora_adapter", post(load_adapter))
        .route("/update_weights_from_disk", post(update_weights))
        .with_state(server.clone());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let addr: SocketAddr = a.addr.parse().with_context(|| format!("--addr {}: not host:port", a.addr))?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        println!(
            "serving {} at http://{local}/v1 (OpenAI API: /v1/models, /v1/completions, /v1/chat/completions)",
            server.name
        );
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
            })
            .await
            .context("serving")
    })
}
