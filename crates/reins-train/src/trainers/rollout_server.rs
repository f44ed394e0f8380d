//! Rollouts from an inference server: a [`CompletionSource`] that samples from an
//! OpenAI-compatible server (`reins serve-model`, or vLLM with LoRA serving) instead of the
//! trainer's own sampler.
//!
//! Each generation batch: the policy's LoRA adapter is saved (PEFT format) into
//! `adapter_dir/step-N` and pushed with vLLM's `POST /v1/load_lora_adapter`; then
//! `POST /v1/completions` sends the batch's rows as token ids with the in-process sampler's
//! settings (`max_tokens`, `temperature` — 0 when greedy —, `top_p`, `seed`) and
//! `return_token_ids: true`, and reads each choice's `token_ids`. The server samples from the
//! weights the learner has at that moment (policy lag 0); with `reins serve-model` the same rows
//! and seed give the in-process sampler's tokens, so a run with a server equals the run without.
//!
//! The policy must have LoRA adapters (`lora_r > 0`): full weights are not pushed. `top_k` and
//! `min_p` are refused (the completions API has no such fields).

use std::path::PathBuf;
use std::time::Duration;

use reins_model::{Model, SamplingConfig};
use serde_json::json;

use super::rollout::CompletionSource;
use crate::rewards::http::HttpEndpoint;
use crate::{Result, TrainError};

pub struct RolloutServer {
    endpoint: HttpEndpoint,
    /// Where adapters are written for the server to load (it must see the same files).
    adapter_dir: PathBuf,
    /// Base model name recorded in each saved adapter.
    base_model: String,
    sampling: Option<SamplingConfig>,
    pushes: u64,
}

impl RolloutServer {
    /// `url` is the server's API root, e.g. `http://127.0.0.1:8000/v1`.
    pub fn new(url: &str, timeout: Duration, adapter_dir: PathBuf, base_model: &str) -> Result<Self> {
        Ok(RolloutServer {
            endpoint: HttpEndpoint::new(url, timeout, "rollout server")?,
            adapter_dir,
            base_model: base_model.to_string(),
            sampling: None,
            pushes: 0,
        })
    }
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
        self.pushes += 1;
        let dir = self.adapter_dir.join(format!("step-{}", self.pushes));
        policy.save_adapter(&dir, &self.base_model).map_err(|e| {
            TrainError::Config(format!(
                "a rollout server needs a LoRA policy (set lora_r > 0) to push its weights each step: {e}"
            ))
        })?;
        let name = format!("policy-{}", self.pushes);
        let path = std::fs::canonicalize(&dir).unwrap_or(dir);
        let (status, reply) = self
            .endpoint
            .post("/load_lora_adapter", json!({"lora_name": name, "lora_path": path}).to_string().as_bytes())?;
        if status != 200 {
            let text: String = String::from_utf8_lossy(&reply).chars().take(200).collect();
            return Err(self.endpoint.err(format!("loading the adapter failed: HTTP {status}: {text}")));
        }
        self.sampling = Some(sampling.clone());
        Ok(())
    }

    fn complete(&mut self, prompts: &[Vec<u32>], _generation: u64) -> Result<Vec<Vec<u32>>> {
        let s =
            self.sampling.clone().ok_or_else(|| TrainError::Input("rollout server: complete before sync".into()))?;
        let body = json!({
            "prompt": prompts,
            "max_tokens": s.max_new_tokens,
            "temperature": if s.do_sample { s.temperature } else { 0.0 },
            "top_p": s.top_p,
            "seed": s.seed,
            "n": 1,
            "return_token_ids": true,
        });
        let v = self.endpoint.post_json("/completions", &body)?;
        let choices = v["choices"].as_array().ok_or_else(|| self.endpoint.err("the reply has no `choices`"))?;
        if choices.len() != prompts.len() {
            return Err(self.endpoint.err(format!("{} choices for {} prompts", choices.len(), prompts.len())));
        }
        choices
            .iter()
            .map(|c| {
                c["token_ids"]
                    .as_array()
                    .ok_or_else(|| {
                        self.endpoint.err("a choice has no `token_ids` (the server must support return_token_ids)")
                    })?
                    .iter()
                    .map(|t| {
                        t.as_u64()
                            .map(|x| x as u32)
                            .ok_or_else(|| self.endpoint.err(format!("token id {t} is not a number")))
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .collect()
    }
}
