//! MetaRM's first-order step (Secrets of RLHF II, Algorithm 1) on the `llama-rm` fixture: at
//! η = 0 it is exactly a reward-model step; at η > 0 the gradient is taken at θ' = θ + η∇J and
//! applied to θ (so θ moves by AdamW's first step, at most lr per weight, not by η∇J).

use reins_train::run::Trainer as _;
use std::path::PathBuf;

use candle_core::Device;
use reins_data::collate::{collate_reward, pad, PaddingSide, RewardBatch};
use reins_data::records::{Meta, Preference, Text};
use reins_data::tokenize::reward::{tokenize_reward, tokenize_reward_response};
use reins_data::HfTokenizer;
use reins_model::{Batch, LoadOptions, Model};
use reins_train::losses::{metarm_difference, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::trainers::metarm::{metarm_step, MetaBatch};
use reins_train::trainers::reward::RewardTrainer;

const LR: f64 = 1e-3;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models/llama-rm")
}

fn trainer() -> RewardTrainer {
    let model = Model::load(&dir(), &Device::Cpu, &LoadOptions { trainable: true, ..Default::default() }).unwrap();
    let cfg = OptimConfig { learning_rate: LR, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
    let opt = Optimizer::new(model.params(), &cfg, 3).unwrap();
    RewardTrainer::new(model, opt, RewardLossConfig::default())
}

fn batches() -> (RewardBatch, MetaBatch) {
    let tok = HfTokenizer::from_dir(dir()).unwrap();
    let pad_id = tok.pad_id_or_eos().unwrap();
    let plain = |s: &str| Text::Plain(s.into());
    let pairs: Vec<_> = [("The sky is", " blue.", " a large green dog"), ("2 + 2 =", " 4", " five, probably")]
        .iter()
        .map(|(q, c, r)| {
            let p = Preference {
                prompt: plain(q),
                chosen: plain(c),
                rejected: plain(r),
                margin: None,
                strength: None,
                reference: None,
                meta: Meta::default(),
            };
            tokenize_reward(&tok, &p).unwrap()
        })
        .collect();
    // Two prompts, k = 3 policy samples each (unlabelled).
    let samples = [("Say hi:", [" hi", " hello there", " no"]), ("Count:", [" 1 2 3", " one", " 1, 2, 3, 4, 5"])];
    let rows: Vec<Vec<u32>> = samples
        .iter()
        .flat_map(|(q, ys)| ys.iter().map(|y| tokenize_reward_response(&tok, &plain(q), &plain(y)).unwrap()))
        .collect();
    let mask: Vec<Vec<u8>> = rows.iter().map(|r| vec![1; r.len()]).collect();
    let meta = MetaBatch {
        input_ids: pad(&rows, pad_id, PaddingSide::Right, None),
        attention_mask: pad(&mask, 0, PaddingSide::Right, None),
        k: 3,
    };
    (collate_reward(&pairs, pad_id, None), meta)
}

fn max_diff(a: &Model, b: &Model) -> f32 {
    a.params()
        .iter()
        .zip(b.params())
        .map(|((_, x), (_, y))| {
            (x.as_tensor() - y.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .fold(0.0, f32::max)
}

#[test]
fn eta_zero_is_an_ordinary_reward_step() {
    let (pairs, meta) = batches();
    let (mut a, mut b) = (trainer(), trainer());
    let m = metarm_step(&mut a, &pairs, &meta, 0.0).unwrap();
    b.train_step(std::slice::from_ref(&pairs)).unwrap();
    assert_eq!(max_diff(&a.model, &b.model), 0.0);
    let j = m["metarm/difference"];
    assert!((1.0 / 3.0..2.0 / 3.0).contains(&j), "J = {j} outside [(k-1)/2k, (k-1)/k)");
}

#[test]
fn the_gradient_is_taken_at_theta_prime_and_applied_to_theta() {
    let (pairs, meta) = batches();
    let eta = 100.0;
    // How far θ' lies from θ: η·max|∇J| on an untouched twin.
    let twin = trainer();
    let b = Batch::new(meta.input_ids.clone(), meta.attention_mask.clone()).unwrap();
    let scores = twin.model.scores(&b).unwrap().narrow(1, 0, 1).unwrap().reshape((2, 3)).unwrap();
    let grads = metarm_difference(&scores).unwrap().backward().unwrap();
    let shift = twin
        .model
        .params()
        .iter()
        .filter_map(|(_, v)| grads.get(v.as_tensor()))
        .map(|g| g.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap())
        .fold(0.0, f32::max)
        * eta as f32;
    assert!(shift > 10.0 * LR as f32, "θ' is too close to θ for this test to see it: {shift}");
    let (mut meta_rm, mut plain) = (trainer(), trainer());
    metarm_step(&mut meta_rm, &pairs, &meta, eta).unwrap();
    plain.train_step(std::slice::from_ref(&pairs)).unwrap();
    // θ was restored before the update: AdamW's first step moves each weight by at most lr.
    let moved = max_diff(&meta_rm.model, &twin.model);
    assert!(moved <= (LR * 1.001) as f32 && moved > 0.0, "θ moved by {moved}");
    // ...in a direction read at θ', not at θ.
    assert!(max_diff(&meta_rm.model, &plain.model) > 0.0);
    assert!(metarm_step(&mut meta_rm, &pairs, &MetaBatch { k: 4, ..meta.clone() }, eta).is_err());
}
