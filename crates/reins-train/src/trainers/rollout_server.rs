//! Rollouts from an inference server: a [`CompletionSource`] that samples from an
//! OpenAI-compatible server (`reins serve-model`, vLLM, SGLang) instead of the trainer's own
//! sampler.
//!
//! Pushing the weights ([`CompletionSource::sync`]): a LoRA policy's adapter is saved (PEFT
//! format) into `push_dir/step-N` and loaded with vLLM's `POST /v1/load_lora_adapter`; a policy
//! without LoRA is saved whole (`config.json` + `model.safetensors`) into `push_dir/step-N` and
//! loaded with SGLang's `POST /update_weights_from_disk` (`{"model_path": …}`, at the server's
//! root), which `reins serve-model` serves too. The server must see the same folder.
//!
//! Sampling: `POST /v1/completions` sends the batch's rows as token ids with the in-process
//! sampler's settings (`max_tokens`, `temperature` — 0 when greedy —, `top_p`, `seed`),
//! `return_token_ids: true` and `logprobs: 0`, and reads each choice's `token_ids` and, where
//! the server gives them, `logprobs.token_logprobs` (the sampler's log-prob of each token, for
//! the trainer's importance-sampling correction). With `reins serve-model` the same rows and
//! seed give the in-process sampler's tokens, so at policy lag 0 a run with a server equals the
//! run without. [`CompletionSource::start`] sends a request from a background thread, so the
//! next batch samples while the trainer learns from this one (GRPO's `max_policy_lag`).
//!
//! `top_k` and `min_p` are refused (the completions API has no such fields).

use std::path::PathBuf;
use std::time::Duration;

use reins_model::{Model, SamplingConfig};
use serde_json::json;

use super::rollout::CompletionSource;
use crate::losses::sampler_correction::SamplerCorrection;
use crate::rewards::http::HttpEndpoint;
use crate::{Result, TrainError};

/// How a trainer uses a server's rollouts: how many learner updates behind the server's
/// weights may be when a batch is trained on (`max_policy_lag`; 0 = pushed before every batch,
/// ≥ 1 = the next batch samples while this one trains), and the importance-sampling correction
/// for the sampler/learner mismatch (`None` = off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerRollouts {
    pub max_policy_lag: u64,
    pub correction: Option<SamplerCorrection>,
}

impl Default for ServerRollouts {
    /// Lag 0, no correction: a completion source that reports no sampler log-probs (replayed
    /// rollouts) trains as given.
    fn default() -> Self {
        ServerRollouts { max_policy_lag: 0, correction: None }
    }
}

pub struct RolloutServer {
    endpoint: HttpEndpoint,
    /// Where pushed weights are written for the server to load (it must see the same files).
    push_dir: PathBuf,
    /// Base model name recorded in each saved adapter.
    base_model: String,
    sampling: Option<SamplingConfig>,
    pushes: u64,
    /// The sampler log-probs of the last `complete`.
    last_logprobs: Option<Vec<Vec<f32>>>,
    /// Requests sent by `start`: generation, rows and the thread waiting for each reply.
    pending: Vec<Pending>,
}

struct Pending {
    generation: u64,
    prompts: Vec<Vec<u32>>,
    reply: std::thread::JoinHandle<Result<Sampled>>,
}

/// Completions and, where the server reports them, their tokens' log-probs.
type Sampled = (Vec<Vec<u32>>, Option<Vec<Vec<f32>>>);

impl RolloutServer {
    /// `url` is the server's API root, e.g. `http://127.0.0.1:8000/v1`.
    pub fn new(url: &str, timeout: Duration, push_dir: PathBuf, base_model: &str) -> Result<Self> {
        Ok(RolloutServer {
            endpoint: HttpEndpoint::new(url, timeout, "rollout server")?,
            push_dir,
            base_model: base_model.to_string(),
            sampling: None,
            pushes: 0,
            last_logprobs: None,
            pending: Vec::new(),
        })
    }

    /// Pushes a LoRA policy's adapter (vLLM's route, under the API root), or a full policy's
    /// weights (SGLang's, at the server's root).
    fn push(&mut self, policy: &Model) -> Result<()> {
        self.pushes += 1;
        let dir = self.push_dir.join(format!("step-{}", self.pushes));
        let lora = policy.lora.is_some();
        let saved = if lora { policy.save_adapter(&dir, &self.base_model) } else { policy.save_pretrained(&dir) };
        saved.map_err(|e| TrainError::State(format!("saving the weights for the rollout server: {e}")))?;
        let path = std::fs::canonicalize(&dir).unwrap_or(dir);
        let (endpoint, route, body) = if lora {
            let name = format!("policy-{}", self.pushes);
            (self.endpoint.clone(), "/load_lora_adapter", json!({"lora_name": name, "lora_path": path}))
        } else {
            (self.endpoint.root(), "/update_weights_from_disk", json!({"model_path": path}))
        };
        let (status, reply) = endpoint.post(route, body.to_string().as_bytes())?;
        if status != 200 {
            let text: String = String::from_utf8_lossy(&reply).chars().take(200).collect();
            return Err(self.endpoint.err(format!("loading the weights ({route}) failed: HTTP {status}: {text}")));
        }
        Ok(())
    }
}

/// One `/v1/completions` request for `prompts` under `s`.
fn request(endpoint: &HttpEndpoint, prompts: &[Vec<u32>], s: &SamplingConfig) -> Result<Sampled> {
    let body = json!({
        "prompt": prompts,
        "max_tokens": s.max_new_tokens,
        "temperature": if s.do_sample { s.temperature } else { 0.0 },
        "top_p": s.top_p,
        "seed": s.seed,
        "n": 1,
        "return_token_ids": true,
        "logprobs": 0,
    });
    let v = endpoint.post_json("/completions", &body)?;
    let choices = v["choices"].as_array().ok_or_else(|| endpoint.err("the reply has no `choices`"))?;
    if choices.len() != prompts.len() {
        return Err(endpoint.err(format!("{} choices for {} prompts", choices.len(), prompts.len())));
    }
    let tokens = choices
        .iter()
        .map(|c| {
            c["token_ids"]
                .as_array()
                .ok_or_else(|| endpoint.err("a choice has no `token_ids` (the server must support return_token_ids)"))?
                .iter()
                .map(|t| {
                    t.as_u64().map(|x| x as u32).ok_or_else(|| endpoint.err(format!("token id {t} is not a number")))
                })
                .collect::<Result<Vec<u32>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    // `logprobs.token_logprobs` (OpenAI's completions shape), where every choice has them.
    let logprobs: Option<Vec<Vec<f32>>> = choices
        .iter()
        .map(|c| {
            c["logprobs"]["token_logprobs"]
                .as_array()
                .map(|l| l.iter().map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY) as f32).collect())
        })
        .collect();
    Ok((tokens, logprobs))
}

impl CompletionSource for RolloutServer {
    fn sync(&mut self, policy: &Model, sampling: &SamplingConfig) -> Result<()> {
        if sampling.top_k != 0 || sampling.min_p > 0.0 {
            return Err(TrainError::Config(
                "a rollout server samples with temperature and top_p only: set top_k = 0 and min_p = 0".into(),
            ));
        }
        if !sampling.stop_on_eos {
            return Err(TrainError::Config("a rollout server stops at EOS: it cannot sample past it".into()));
        }
        self.push(policy)?;
        self.sampling = Some(sampling.clone());
        Ok(())
    }

    fn complete(&mut self, prompts: &[Vec<u32>], generation: u64) -> Result<Vec<Vec<u32>>> {
        let started = match self.pending.iter().position(|p| p.generation == generation) {
            Some(i) => Some(self.pending.remove(i)).filter(|p| p.prompts == prompts),
            None => None,
        };
        let (tokens, logprobs) = match started {
            Some(p) => p.reply.join().map_err(|_| self.endpoint.err("the request thread panicked"))??,
            None => {
                let s = self
                    .sampling
                    .clone()
                    .ok_or_else(|| TrainError::Input("rollout server: complete before sync".into()))?;
                request(&self.endpoint, prompts, &s)?
            }
        };
        self.last_logprobs = logprobs;
        Ok(tokens)
    }

    fn logprobs(&mut self) -> Option<Vec<Vec<f32>>> {
        self.last_logprobs.take()
    }

    fn start(&mut self, prompts: &[Vec<u32>], generation: u64, sampling: &SamplingConfig) -> Result<bool> {
        if self.pushes == 0 {
            return Err(TrainError::Input("rollout server: start before the first sync".into()));
        }
        let (endpoint, rows, s) = (self.endpoint.clone(), prompts.to_vec(), sampling.clone());
        let reply = std::thread::spawn(move || request(&endpoint, &rows, &s));
        self.pending.retain(|p| p.generation != generation);
        self.pending.push(Pending { generation, prompts: prompts.to_vec(), reply });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    /// A server that accepts and then stays silent, or hangs up without a reply: the request
    /// (sent from the background thread, as `start` does) fails with an error naming the server.
    #[test]
    fn a_silent_or_dying_server_is_an_error_not_a_hang() {
        let s = SamplingConfig::default();
        for hang_up in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/v1", listener.local_addr().unwrap());
            let held = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 256];
                let _ = conn.read(&mut buf);
                if !hang_up {
                    std::thread::sleep(Duration::from_millis(800));
                }
            });
            let endpoint = HttpEndpoint::new(&url, Duration::from_millis(300), "rollout server").unwrap();
            let s = s.clone();
            let reply = std::thread::spawn(move || request(&endpoint, &[vec![1, 2, 3]], &s));
            let e = reply.join().unwrap().unwrap_err().to_string();
            assert!(e.contains("rollout server") && e.contains(&url), "{e}");
            if !hang_up {
                assert!(e.contains("no reply within"), "{e}");
            }
            held.join().unwrap();
        }
    }
}
