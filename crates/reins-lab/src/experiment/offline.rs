//! The offline stages of the experiment (the base model's pretraining and SFT, the reward
//! models, DPO) and the sampling, scoring and KL that every stage uses.

use std::path::Path;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use reins_data::collate::{PreferenceBatch, RewardBatch, SftBatch};
use reins_model::generate::{generate, Hooks};
use reins_model::init::{llama_config, random_weights};
use reins_model::{Batch, LoadOptions, Model, ModelConfig, SamplingConfig};
use reins_train::losses::{ContrastiveConfig, DpoConfig, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::run::Trainer as _;
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::metarm::{metarm_step, MetaBatch};
use reins_train::trainers::reward::{trainable_params, RewardTrainer};
use reins_train::trainers::segment_reward::{collate_segments, SegmentExample, SegmentRewardTrainer};
use reins_train::trainers::sft::SftTrainer;

use crate::config::TrainBudget;
use crate::{chat, Prompt};

use super::{stage, Result, Session};

impl Session<'_> {
    pub(crate) fn load(&self, dir: &Path, opts: LoadOptions) -> Result<Model> {
        Model::load(dir, &self.device, &opts).map_err(stage("model"))
    }

    /// The tokenizer's pad id (its EOS when it has no pad).
    pub(crate) fn pad_id(&self) -> u32 {
        self.tok.pad_id_or_eos().unwrap_or(0)
    }

    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tok.encode(text, false).map_err(stage("tokenize"))
    }

    /// Pretrains a fresh Llama on the corpus, then SFTs it; saves an HF folder at `dir`.
    pub(crate) fn pretrain_and_sft(&mut self, dir: &Path) -> Result<()> {
        let c = &self.cfg.model;
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let mut raw = llama_config(
            self.tok.vocab_size(),
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
            c.max_position_embeddings,
        );
        raw["rope_parameters"]["rope_theta"] = c.rope_theta.into();
        raw["eos_token_id"] = self.end_id.into();
        raw["pad_token_id"] = pad.into();
        let mcfg = ModelConfig::from_value(raw).map_err(stage("model config"))?;
        let mut w = random_weights(&mcfg, self.cfg.seed, &self.device).map_err(stage("model init"))?;
        let model =
            Model::from_weights(mcfg, &mut w, &self.device, &LoadOptions { trainable: true, ..Default::default() })
                .map_err(stage("model init"))?;
        let corpus = self.lab.world.corpus(self.cfg.pretrain.n_examples, self.cfg.sft.n_examples);
        let max = c.max_position_embeddings;
        let texts: Vec<(Vec<u32>, usize)> = corpus
            .pretrain
            .iter()
            .map(|t| Ok((self.encode(t)?.into_iter().take(max).collect(), 0)))
            .collect::<Result<_>>()?;
        let model = self.train_lm("pretrain", model, &texts, &self.cfg.pretrain.clone())?;
        let sft: Vec<(Vec<u32>, usize)> = corpus
            .sft
            .iter()
            .map(|e| {
                let (p, r) = e.chat_prompt_completion();
                let pi = self.encode(&p)?;
                let n = pi.len();
                let ids: Vec<u32> = pi.into_iter().chain(self.encode(&r)?).take(max).collect();
                Ok((ids, n))
            })
            .collect::<Result<_>>()?;
        let model = self.train_lm("sft", model, &sft, &self.cfg.sft.clone())?;
        // The tokenizer stage already wrote its files into `dir`.
        model.save_pretrained(dir).map_err(stage("save"))?;
        Ok(())
    }

    /// Next-token training on `(ids, prompt_len)`; the loss skips the first `prompt_len` targets.
    pub(crate) fn train_lm(
        &mut self,
        name: &str,
        model: Model,
        data: &[(Vec<u32>, usize)],
        b: &TrainBudget,
    ) -> Result<Model> {
        let opt = OptimConfig {
            learning_rate: b.learning_rate,
            warmup_steps: b.warmup_steps,
            lr_scheduler_type: SchedulerType::Cosine,
            ..Default::default()
        };
        let optimizer = Optimizer::new(model.params(), &opt, b.max_steps).map_err(stage("optimizer"))?;
        let mut trainer = SftTrainer::new(model, optimizer);
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ name.len() as u64);
        self.progress.stage(name, b.max_steps);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut cursor = data.len();
        for _ in 0..b.max_steps {
            let mut idx = Vec::new();
            while idx.len() < b.per_device_train_batch_size {
                if cursor == order.len() {
                    order.shuffle(&mut rng);
                    cursor = 0;
                }
                idx.push(order[cursor]);
                cursor += 1;
            }
            let rows: Vec<&(Vec<u32>, usize)> = idx.iter().map(|&i| &data[i]).collect();
            let t = rows.iter().map(|r| r.0.len()).max().unwrap_or(1);
            let batch = SftBatch {
                input_ids: rows.iter().map(|r| pad_to(&r.0, t, pad)).collect(),
                attention_mask: Some(rows.iter().map(|r| pad_to(&vec![1u8; r.0.len()], t, 0)).collect()),
                labels: rows
                    .iter()
                    .map(|r| (0..t).map(|j| if j < r.1 || j >= r.0.len() { -100 } else { r.0[j] as i64 }).collect())
                    .collect(),
                position_ids: None,
            };
            let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("train"))?;
            self.progress.tick(&format!("loss {:.3}", m.get("loss").copied().unwrap_or(f64::NAN)));
        }
        Ok(trainer.model)
    }

    /// `n` completions per prompt (plain response texts).
    pub(crate) fn sample(
        &self,
        m: &Model,
        prompts: &[Prompt],
        n: usize,
        temperature: f64,
        max_new: usize,
        salt: u64,
    ) -> Result<Vec<Vec<String>>> {
        let mut ids = Vec::new();
        for p in prompts {
            let e = self.encode(&p.chat())?;
            for _ in 0..n {
                ids.push(e.clone());
            }
        }
        let cfg = SamplingConfig {
            max_new_tokens: max_new,
            do_sample: temperature > 0.0,
            temperature: if temperature > 0.0 { temperature } else { 1.0 },
            seed: self.cfg.seed.wrapping_mul(31).wrapping_add(salt),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(prompts.len());
        let mut texts = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(64) {
            let g = generate(m, chunk, &cfg, Hooks::default()).map_err(stage("generate"))?;
            for t in &g.tokens {
                let raw = self.tok.decode(t, false).map_err(stage("decode"))?;
                texts.push(chat::extract_response(&raw).0);
            }
        }
        for c in texts.chunks(n) {
            out.push(c.to_vec());
        }
        Ok(out)
    }

    /// Token ids of `prompt + completion` and the prompt length.
    pub(crate) fn pair_ids(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        Ok((self.encode(&chat::prompt(prompt))?, self.encode(&chat::completion(response))?))
    }

    pub(crate) fn train_reward_model(
        &mut self,
        base: &Path,
        data: &[crate::PreferenceRecord],
        member: u64,
    ) -> Result<Model> {
        self.train_reward_model_with(base, data, member, None, &ContrastiveConfig::default())
    }

    /// As [`Self::train_reward_model`], with a per-pair Bradley–Terry `(margin, soft label)`
    /// aligned with `data` (noise-aware training, Secrets of RLHF II §2.4) and a contrastive
    /// term (Secrets of RLHF II §3) when given.
    pub(crate) fn train_reward_model_with(
        &mut self,
        base: &Path,
        data: &[crate::PreferenceRecord],
        member: u64,
        targets: Option<&[(f64, f64)]>,
        contrastive: &ContrastiveConfig,
    ) -> Result<Model> {
        if targets.is_some_and(|t| t.len() != data.len()) {
            return Err(crate::LabError::Stage {
                stage: "reward model",
                message: "one (margin, label) per pair needed".into(),
            });
        }
        let rows: Vec<(Vec<u32>, Vec<u32>)> = data
            .iter()
            .map(|r| {
                let (p, c) = self.pair_ids(&r.prompt, &r.chosen)?;
                let (_, x) = self.pair_ids(&r.prompt, &r.rejected)?;
                Ok(([p.clone(), c].concat(), [p, x].concat()))
            })
            .collect::<Result<_>>()?;
        self.train_reward_model_rows(base, &rows, member, targets, contrastive, None)
    }

    /// The base model with a fresh score head (seeded by `member`) and its optimizer at the
    /// reward models' learning rate and steps (linear decay).
    fn score_model(&self, base: &Path, member: u64) -> Result<(Model, Optimizer)> {
        let rm = &self.cfg.reward_model;
        let model = self.load(
            base,
            LoadOptions { trainable: true, score_head: Some(1), seed: self.cfg.seed + member, ..Default::default() },
        )?;
        let optimizer = Optimizer::new(model.params(), &self.rm_optim(), rm.max_steps).map_err(stage("optimizer"))?;
        Ok((model, optimizer))
    }

    /// The reward models' optimizer settings.
    fn rm_optim(&self) -> OptimConfig {
        OptimConfig {
            learning_rate: self.cfg.reward_model.learning_rate,
            lr_scheduler_type: SchedulerType::Linear,
            ..Default::default()
        }
    }

    /// A reward model on whole sequences `(preferred, other)` — their prompts may differ, as in
    /// PIT's gap comparisons. With `meta` (meta batches of policy samples and η) every step is a
    /// MetaRM step ([`metarm_step`], meta batch `t mod len` at step t); at η = 0 that is the
    /// plain run, draw for draw.
    pub(crate) fn train_reward_model_rows(
        &mut self,
        base: &Path,
        rows: &[(Vec<u32>, Vec<u32>)],
        member: u64,
        targets: Option<&[(f64, f64)]>,
        contrastive: &ContrastiveConfig,
        meta: Option<(&[MetaBatch], f64)>,
    ) -> Result<Model> {
        let rm = self.cfg.reward_model.clone();
        let (model, mut optimizer) = self.score_model(base, member)?;
        let prototypes = contrastive
            .init_prototypes(model.config.hidden_size, self.cfg.seed + member, &self.device)
            .map_err(stage("reward model"))?;
        if prototypes.is_some() {
            let params = trainable_params(&model, prototypes.as_ref());
            optimizer = Optimizer::new(&params, &self.rm_optim(), rm.max_steps).map_err(stage("optimizer"))?;
        }
        let mut trainer = RewardTrainer::new(model, optimizer, RewardLossConfig::default());
        trainer.contrastive = *contrastive;
        trainer.prototypes = prototypes;
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed + 100 + member);
        self.progress.stage(&format!("reward model {member}"), rm.max_steps);
        for step in 0..rm.max_steps {
            let idx: Vec<usize> =
                (0..rm.per_device_train_batch_size).map(|_| rand::Rng::random_range(&mut rng, 0..rows.len())).collect();
            let seqs: Vec<&Vec<u32>> = idx.iter().map(|&i| &rows[i].0).chain(idx.iter().map(|&i| &rows[i].1)).collect();
            let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
            let batch = RewardBatch {
                input_ids: seqs.iter().map(|s| pad_to(s, t, pad)).collect(),
                attention_mask: seqs.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
                margin: targets.map(|t| idx.iter().map(|&i| t[i].0).collect()),
                strength: targets.map(|t| idx.iter().map(|&i| t[i].1).collect()),
            };
            let m = match meta {
                Some((batches, eta)) if !batches.is_empty() => {
                    metarm_step(&mut trainer, &batch, &batches[step % batches.len()], eta)
                }
                _ => trainer.train_step(std::slice::from_ref(&batch)),
            }
            .map_err(stage("reward model"))?;
            self.progress.tick(&format!("loss {:.3} acc {:.2}", m["loss"], m.get("accuracy").copied().unwrap_or(0.0)));
        }
        Ok(trainer.model.detached())
    }

    /// A segment reward model (Fine-Grained RLHF; or RLBFF's principle model, one target per
    /// sequence) from the base model on `examples` (sequence ids with each segment's last
    /// position and label), with the reward models' budget: `reward_model.max_steps` steps of
    /// `per_device_train_batch_size` random examples.
    pub(crate) fn train_segment_model(
        &mut self,
        base: &Path,
        examples: &[SegmentExample],
        member: u64,
    ) -> Result<Model> {
        if examples.is_empty() {
            return Err(crate::LabError::Stage {
                stage: "segment reward model",
                message: "no labelled responses".into(),
            });
        }
        let rm = self.cfg.reward_model.clone();
        let (model, optimizer) = self.score_model(base, member)?;
        // The model is used here, not saved: no spec file to carry.
        let mut trainer =
            SegmentRewardTrainer::new(model, optimizer, Vec::new()).map_err(stage("segment reward model"))?;
        let pad = self.pad_id();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed + 200 + member);
        self.progress.stage("segment reward model", rm.max_steps);
        for _ in 0..rm.max_steps {
            let batch: Vec<SegmentExample> = (0..rm.per_device_train_batch_size)
                .map(|_| examples[rand::Rng::random_range(&mut rng, 0..examples.len())].clone())
                .collect();
            let m = trainer.train_step(&[collate_segments(&batch, pad)]).map_err(stage("segment reward model"))?;
            self.progress.tick(&format!("loss {:.3} acc {:.2}", m["loss"], m.get("accuracy").copied().unwrap_or(0.0)));
        }
        Ok(trainer.model.detached())
    }

    /// Mean ensemble score of `(prompt, response)` pairs.
    pub(crate) fn score_mean(&self, members: &[Model], items: &[(String, String)]) -> Result<Vec<f64>> {
        let all = self.score_members(members, items)?;
        Ok((0..items.len()).map(|j| all.iter().map(|m| m[j]).sum::<f64>() / all.len().max(1) as f64).collect())
    }

    /// Each member's score of `(prompt, response)` pairs: `[M][N]`.
    pub(crate) fn score_members(&self, members: &[Model], items: &[(String, String)]) -> Result<Vec<Vec<f64>>> {
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let seqs: Vec<Vec<u32>> = items
            .iter()
            .map(|(p, r)| {
                let (a, b) = self.pair_ids(p, r)?;
                Ok([a, b].concat())
            })
            .collect::<Result<_>>()?;
        let mut all = Vec::with_capacity(members.len());
        for m in members {
            let mut scores = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks(64) {
                let t = chunk.iter().map(Vec::len).max().unwrap_or(1);
                let batch = Batch::new(
                    chunk.iter().map(|s| pad_to(s, t, pad)).collect(),
                    chunk.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
                )
                .map_err(stage("score"))?;
                let s: Vec<f32> =
                    m.scores(&batch).and_then(|x| Ok(x.flatten_all()?.to_vec1()?)).map_err(stage("score"))?;
                scores.extend(s.iter().map(|&v| v as f64));
            }
            all.push(scores);
        }
        Ok(all)
    }

    /// The pooled features `φ` (the last token's hidden state, which the score head reads) of
    /// `(prompt, response)` items under a reward model: `[N][D]`.
    pub(crate) fn pooled_rm_features(&self, model: &Model, items: &[(String, String)]) -> Result<Vec<Vec<f64>>> {
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let seqs: Vec<Vec<u32>> = items
            .iter()
            .map(|(p, r)| {
                let (a, b) = self.pair_ids(p, r)?;
                Ok([a, b].concat())
            })
            .collect::<Result<_>>()?;
        let (phi, _) =
            reins_train::statistics::features::pooled_features(model, &seqs, pad, 64).map_err(stage("features"))?;
        Ok(phi)
    }

    pub(crate) fn train_dpo(&mut self, base: &Path, data: &[crate::PreferenceRecord]) -> Result<Model> {
        let d = &self.cfg.dpo;
        let policy = self.load(base, LoadOptions { trainable: true, ..Default::default() })?;
        let reference = self.load(base, LoadOptions::default())?;
        let opt = OptimConfig {
            learning_rate: d.learning_rate,
            lr_scheduler_type: SchedulerType::Linear,
            ..Default::default()
        };
        let optimizer = Optimizer::new(policy.params(), &opt, d.max_steps).map_err(stage("optimizer"))?;
        let loss: DpoConfig = serde_json::from_value(serde_json::json!({"beta": d.beta, "loss_type": d.loss_type}))
            .map_err(stage("dpo config"))?;
        let mut trainer =
            DpoTrainer::new(policy, Reference::Model(Box::new(reference)), loss, optimizer).map_err(stage("dpo"))?;
        let pad = self.tok.pad_id_or_eos().unwrap_or(0);
        let rows = self.pair_rows(data)?;
        let mut rng = self.pair_draws();
        self.progress.stage("DPO", d.max_steps);
        for _ in 0..d.max_steps {
            let idx: Vec<usize> =
                (0..d.per_device_train_batch_size).map(|_| rand::Rng::random_range(&mut rng, 0..rows.len())).collect();
            let batch = pair_batch(&rows, &idx, pad);
            let m = trainer.train_step(std::slice::from_ref(&batch)).map_err(stage("dpo"))?;
            self.progress.tick(&format!(
                "loss {:.3} margin {:.2}",
                m["loss"],
                m.get("rewards/margins").copied().unwrap_or(0.0)
            ));
        }
        Ok(trainer.policy.detached())
    }

    /// The `(prompt, chosen, rejected)` token ids of preference records.
    pub(crate) fn pair_rows(&self, data: &[crate::PreferenceRecord]) -> Result<Vec<PairRow>> {
        data.iter()
            .map(|r| {
                let (p, c) = self.pair_ids(&r.prompt, &r.chosen)?;
                let (_, x) = self.pair_ids(&r.prompt, &r.rejected)?;
                Ok((p, c, x))
            })
            .collect()
    }

    /// The stream that draws the pairs of each pairwise step: offline pairwise trainers that
    /// share it see the same pairs at the same steps.
    pub(crate) fn pair_draws(&self) -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(self.cfg.seed + 7)
    }

    /// Mean over prompts of `Σ_t KL(π(·|y<t) ‖ π_ref(·|y<t))` along the policy's own
    /// completions: the exact per-token KL over the vocabulary, never negative.
    pub(crate) fn kl_to_reference(
        &self,
        policy: &Model,
        reference: &Model,
        prompts: &[Prompt],
        outs: &[String],
    ) -> Result<f64> {
        let mut total = 0.0;
        for (p, o) in prompts.iter().zip(outs) {
            let (a, b) = self.pair_ids(&p.text, o)?;
            let n = a.len() + b.len();
            let batch = Batch::new(vec![[a.clone(), b].concat()], vec![vec![1u8; n]]).map_err(stage("kl"))?;
            let kl = (|| -> reins_model::Result<Vec<f32>> {
                let lp = reins_model::nn::log_softmax_last(&policy.detached().logits(&batch)?)?;
                let lq = reins_model::nn::log_softmax_last(&reference.detached().logits(&batch)?)?;
                let per_pos: Tensor = (lp.exp()? * (&lp - &lq)?)?.sum(candle_core::D::Minus1)?;
                Ok(per_pos.flatten_all()?.to_vec1()?)
            })()
            .map_err(stage("kl"))?;
            // Positions a.len()-1 .. n-2 predict the completion tokens.
            total += kl[a.len() - 1..n - 1].iter().map(|&x| x as f64).sum::<f64>();
        }
        Ok(total / prompts.len().max(1) as f64)
    }
}

/// A preference pair as token ids: `(prompt, chosen, rejected)`.
pub(crate) type PairRow = (Vec<u32>, Vec<u32>, Vec<u32>);

/// The right-padded preference batch of `rows[idx]` (chosen rows, then rejected).
pub(crate) fn pair_batch(rows: &[PairRow], idx: &[usize], pad: u32) -> PreferenceBatch {
    let mut ids = Vec::new();
    let mut cm = Vec::new();
    for pick_chosen in [true, false] {
        for &i in idx {
            let (p, c, x) = &rows[i];
            let comp = if pick_chosen { c } else { x };
            ids.push([p.clone(), comp.clone()].concat());
            cm.push([vec![0u8; p.len()], vec![1u8; comp.len()]].concat());
        }
    }
    let t = ids.iter().map(Vec::len).max().unwrap_or(1);
    PreferenceBatch {
        attention_mask: ids.iter().map(|s| pad_to(&vec![1u8; s.len()], t, 0)).collect(),
        input_ids: ids.iter().map(|s| pad_to(s, t, pad)).collect(),
        completion_mask: cm.iter().map(|s| pad_to(s, t, 0)).collect(),
        margin: None,
        strength: None,
        ref_logps: None,
    }
}

/// `row` padded with `value` to length `t`.
fn pad_to<T: Clone>(row: &[T], t: usize, value: T) -> Vec<T> {
    let mut r = row.to_vec();
    r.resize(t, value);
    r
}
