//! The named stages every lab experiment composes: the world and the cached base model, the
//! labelled pairs, the reward models. Each returns a typed value; the quickstart (`run`) and
//! the registered experiments (`crate::lab::experiments`) are straight-line sequences of them.

use std::path::PathBuf;

use candle_core::Device;
use rand::SeedableRng;
use reins_data::HfTokenizer;
use reins_model::{LoadOptions, Model};

use crate::experiment::{base_cache_dir, Progress, Result, Session};
use crate::{chat, Lab, LabConfig, LabError, Prompt};

/// The SFT base model every policy starts from and every reward model is initialised from.
pub struct Base {
    /// The HF folder (tokenizer and weights), cached under `cfg.cache_dir`.
    pub dir: PathBuf,
    /// The SFT policy, loaded frozen: the reference of every KL.
    pub sft: Model,
}

/// Pairs sampled from a policy and labelled by the simulated population.
pub struct Labelled {
    /// `(prompt, response a, response b)`.
    pub pairs: Vec<(String, String, String)>,
    pub labels: Vec<crate::Label>,
    /// The decided labels as records (ties and skips dropped).
    pub records: Vec<crate::PreferenceRecord>,
}

/// A policy's answers to prompts, judged: the stage *evaluation*.
pub struct Evaluation {
    /// One sampled answer per prompt.
    pub outs: Vec<String>,
    /// The gold score of each answer.
    pub gold: Vec<f64>,
    /// Mean over prompts of the exact KL to the SFT reference along the answers.
    pub kl: f64,
}

impl Evaluation {
    pub fn mean_gold(&self) -> f64 {
        crate::metrics::mean(&self.gold)
    }
}

/// Stages *world* and *base model*: builds the world, gold reward and annotators from `cfg`,
/// then loads the tokenizer and SFT model from the cache, training them first if absent.
pub fn open<'a>(cfg: &'a LabConfig, progress: &'a mut dyn Progress) -> Result<(Session<'a>, Base)> {
    let lab = Lab::new(cfg)?;
    let cache = base_cache_dir(cfg, &lab.world);
    let dir = cache.join("model");
    if !dir.join("tokenizer.json").exists() {
        progress.stage("tokenizer", 1);
        crate::tokenizer_train::train_and_save(&lab.world, cfg, &dir)?;
        progress.tick("trained");
    }
    // A cache left broken (an interrupted run, a disk that filled up) is named, with the fix.
    let stale = |e: &dyn std::fmt::Display| LabError::Stage {
        stage: "cache",
        message: format!("{e}\nhint: delete {} to rebuild the cached base model", cache.display()),
    };
    let tok = HfTokenizer::from_dir(&dir).map_err(|e| stale(&e))?;
    let end_id = tok.token_to_id(chat::END).ok_or_else(|| LabError::Tokenizer("no <|end|> token".into()))?;
    let mut session = Session { cfg, lab, tok, device: Device::Cpu, end_id, progress };
    if !dir.join("model.safetensors").exists() {
        session.pretrain_and_sft(&dir)?;
    }
    let sft = session.load(&dir, LoadOptions::default()).map_err(|e| stale(&e))?;
    Ok((session, Base { dir, sft }))
}

impl Session<'_> {
    /// Stage *labels*: two samples of `policy` per prompt (sampling stream `salt`), labelled by
    /// the population (label stream `label_seed`). Fails when fewer than 4 labels are usable.
    pub fn labelled_pairs(
        &mut self,
        policy: &Model,
        prompts: &[Prompt],
        salt: u64,
        label_seed: u64,
    ) -> Result<Labelled> {
        let c = &self.cfg.pairs;
        self.progress.stage("sampling pairs", 1);
        let samples = self.sample(policy, prompts, 2, c.temperature, c.max_new_tokens, salt)?;
        self.progress.tick("done");
        let pairs: Vec<(String, String, String)> =
            prompts.iter().zip(&samples).map(|(p, s)| (p.text.clone(), s[0].clone(), s[1].clone())).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(label_seed);
        let labels = self.lab.population.label_pairs(&pairs, &mut rng);
        let records: Vec<crate::PreferenceRecord> =
            pairs.iter().zip(&labels).filter_map(|((p, a, b), l)| l.to_record(p, a, b, false)).collect();
        if records.len() < 4 {
            return Err(LabError::Stage {
                stage: "labels",
                message: format!("only {} usable pairs; raise pairs.n_prompts", records.len()),
            });
        }
        Ok(Labelled { pairs, labels, records })
    }

    /// Stage *reward models*: `k` members from the base model, member 0 on all `records`, the
    /// others on bootstrap resamples of them (Coste et al., arXiv:2310.02743, §3).
    pub fn reward_models(&mut self, base: &Base, records: &[crate::PreferenceRecord], k: usize) -> Result<Vec<Model>> {
        let mut members = Vec::new();
        for m in 0..k.max(1) {
            let data = if m == 0 { records.to_vec() } else { bootstrap(records, self.cfg.seed + m as u64) };
            members.push(self.train_reward_model(&base.dir, &data, m as u64)?);
        }
        Ok(members)
    }

    /// Stage *judge SFT* (research note §0, judge-format data): the SFT model fine-tuned for
    /// `steps` steps on the judge-format examples of `records` ([`crate::judge_format::examples`],
    /// both orders of each), saved as `osp-judge-sft`: the start, the reference and the first
    /// judge of the OSP arms.
    pub fn judge_sft(&mut self, base: &Base, records: &[crate::PreferenceRecord], steps: usize) -> Result<Base> {
        let judge = crate::judge_format::examples(records);
        self.fine_tune(base, "judge SFT", "osp-judge-sft", judge, steps)
    }

    /// Stage *control SFT* (research note §0, control tags): the SFT model fine-tuned for `steps`
    /// steps on prompts behind the better / worse instructions with responses of a good / bad
    /// quality mix ([`crate::control_tags::examples`]), saved as `control-sft`: T-REG's start,
    /// reference and contrastive scorer.
    pub fn control_sft(&mut self, base: &Base, steps: usize) -> Result<Base> {
        let n = self.cfg.sft.n_examples;
        let tagged = crate::control_tags::examples(&self.lab.world, n, self.cfg.seed);
        self.fine_tune(base, "control SFT", "control-sft", tagged, steps)
    }

    /// The base model fine-tuned for `steps` steps (the SFT stage's batch size and learning
    /// rate) on `examples` — `(prompt, completion)` chat texts — mixed one to one with SFT
    /// examples of the world, so it keeps answering plain prompts as before. Saved as an HF
    /// folder `dir_name` beside the base model (retrained on every call) and returned as a base.
    pub(crate) fn fine_tune(
        &mut self,
        base: &Base,
        name: &str,
        dir_name: &str,
        examples: Vec<(String, String)>,
        steps: usize,
    ) -> Result<Base> {
        let corpus = self.lab.world.corpus(0, self.cfg.sft.n_examples);
        let generation: Vec<(String, String)> = corpus.sft.iter().map(|e| e.chat_prompt_completion()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ 0x4a55_4447);
        let plain = crate::judge_format::draw(&generation, examples.len(), &mut rng);
        let data: Vec<(Vec<u32>, usize)> = examples
            .into_iter()
            .chain(plain)
            .map(|(p, c)| {
                let ids = self.encode(&p)?;
                let n = ids.len();
                Ok((ids.into_iter().chain(self.encode(&c)?).collect(), n))
            })
            .collect::<Result<_>>()?;
        let model = self.load(&base.dir, LoadOptions { trainable: true, ..Default::default() })?;
        let budget = crate::config::TrainBudget { max_steps: steps, ..self.cfg.sft.clone() };
        let model = self.train_lm(name, model, &data, &budget)?;
        let dir = base.dir.with_file_name(dir_name);
        model.save_pretrained(&dir).map_err(crate::experiment::stage("save"))?;
        reins_train::run::copy_tokenizer_files(&base.dir, &dir).map_err(crate::experiment::stage("save"))?;
        let sft = self.load(&dir, LoadOptions::default())?;
        Ok(Base { dir, sft })
    }

    /// The world, gold reward and annotators this session was opened with.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The config this session was opened with.
    pub fn cfg(&self) -> &LabConfig {
        self.cfg
    }

    /// `n` samples of `policy` per prompt at the evaluation temperature and length (sampling
    /// stream `salt`).
    pub fn sample_eval(&self, policy: &Model, prompts: &[Prompt], n: usize, salt: u64) -> Result<Vec<Vec<String>>> {
        let e = &self.cfg.eval;
        self.sample(policy, prompts, n, e.temperature, e.max_new_tokens, salt)
    }

    /// Each member's score of `(prompt, response)` items: `[M][N]`.
    pub fn member_scores(&self, members: &[Model], items: &[(String, String)]) -> Result<Vec<Vec<f64>>> {
        self.score_members(members, items)
    }

    /// A reward model's pooled features `φ` of `(prompt, response)` items: `[N][D]` (what its
    /// score head reads; see `reins_train::statistics`).
    pub fn rm_features(&self, model: &Model, items: &[(String, String)]) -> Result<Vec<Vec<f64>>> {
        self.pooled_rm_features(model, items)
    }

    /// Stage *evaluation*: one answer of `policy` per prompt (sampling stream `salt`), its gold
    /// score and the KL to the SFT policy.
    pub fn evaluate(
        &mut self,
        name: &str,
        policy: &Model,
        base: &Base,
        prompts: &[Prompt],
        salt: u64,
    ) -> Result<Evaluation> {
        self.progress.stage(&format!("evaluating {name}"), 1);
        let outs: Vec<String> =
            self.sample_eval(policy, prompts, 1, salt)?.into_iter().map(|mut v| v.remove(0)).collect();
        self.progress.tick("done");
        let gold = prompts.iter().zip(&outs).map(|(p, o)| self.lab.gold.score(&p.text, o)).collect();
        let kl = self.kl_to_reference(policy, &base.sft, prompts, &outs)?;
        Ok(Evaluation { outs, gold, kl })
    }

    /// Reports a stage to the caller's progress display.
    pub fn announce(&mut self, name: &str) {
        self.progress.stage(name, 1);
    }
}

fn bootstrap(records: &[crate::PreferenceRecord], seed: u64) -> Vec<crate::PreferenceRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..records.len()).map(|_| records[rand::Rng::random_range(&mut rng, 0..records.len())].clone()).collect()
}
