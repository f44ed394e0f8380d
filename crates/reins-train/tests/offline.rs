//! Offline trainers on the tiny fixture models: gradient accumulation of SFT normalised as
//! transformers' Trainer does, soft labels (`strength`) in the reward and DPO losses, and
//! Plackett–Luce over tied grades.

use std::path::PathBuf;

use candle_core::Device;
use reins_data::collate::{collate_reward, PreferenceBatch, SftBatch};
use reins_data::records::{Meta, Preference, Text};
use reins_data::tokenize::reward::tokenize_reward;
use reins_data::HfTokenizer;
use reins_model::{LoadOptions, Model};
use reins_train::losses::{DpoConfig, DpoLossType, RewardLossConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::optim::SchedulerType;
use reins_train::run::Trainer as _;
use reins_train::trainers::dpo::{DpoTrainer, Reference};
use reins_train::trainers::reward::{collate_ranked_reward, ListwiseRewardTrainer, RankedRewardIds, RewardTrainer};
use reins_train::trainers::sft::SftTrainer;

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hf/models").join(name)
}

fn load(name: &str, trainable: bool) -> Model {
    let opts = LoadOptions { trainable, ..Default::default() };
    Model::load(&model_dir(name), &Device::Cpu, &opts).unwrap()
}

fn optimizer(model: &Model) -> Optimizer {
    let cfg = OptimConfig { learning_rate: 1e-3, lr_scheduler_type: SchedulerType::Constant, ..Default::default() };
    Optimizer::new(model.params(), &cfg, 3).unwrap()
}

fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// An SFT batch of right-padded rows; `labels` are -100 on the first `prompt` tokens of each.
fn sft_batch(rows: &[(Vec<u32>, usize)]) -> SftBatch {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap();
    let mut b = SftBatch { input_ids: vec![], attention_mask: Some(vec![]), labels: vec![], position_ids: None };
    for (ids, prompt) in rows {
        let pad = width - ids.len();
        b.input_ids.push(ids.iter().copied().chain(std::iter::repeat_n(3, pad)).collect());
        b.attention_mask
            .as_mut()
            .unwrap()
            .push(std::iter::repeat_n(1, ids.len()).chain(std::iter::repeat_n(0, pad)).collect());
        b.labels.push(
            ids.iter()
                .enumerate()
                .map(|(t, &x)| if t < *prompt { -100 } else { i64::from(x) })
                .chain(std::iter::repeat_n(-100, pad))
                .collect(),
        );
    }
    b
}

/// transformers' Trainer divides each micro-batch's summed token loss by the label tokens of
/// the whole accumulated batch (`num_items_in_batch`): the accumulated gradient is then the
/// gradient of the big batch's token mean, however the tokens fall into micro-batches.
#[test]
fn sft_accumulation_normalises_by_the_tokens_of_the_whole_batch() {
    // 2 label tokens in the first micro-batch, 9 + 6 in the second.
    let a = (vec![5, 17, 9, 40, 41], 3);
    let b = (vec![7, 8, 60, 61, 62, 63, 64, 65, 66, 67, 68], 2);
    let c = (vec![11, 12, 13, 90, 91, 92, 93, 94, 95], 3);
    let micro = [sft_batch(std::slice::from_ref(&a)), sft_batch(&[b.clone(), c.clone()])];
    let whole = sft_batch(&[a, b, c]);

    let m = load("llama", true);
    let opt = optimizer(&m);
    let mut accumulated = SftTrainer::new(m, opt);
    let got = accumulated.train_step(&micro).unwrap();
    let m = load("llama", true);
    let opt = optimizer(&m);
    let mut one = SftTrainer::new(m, opt);
    let want = one.train_step(std::slice::from_ref(&whole)).unwrap();

    let (eg, el) = (rel_err(got["grad_norm"], want["grad_norm"]), rel_err(got["loss"], want["loss"]));
    assert!(
        eg < 1e-5 && el < 1e-5,
        "accumulated grad_norm {} / loss {} vs one batch {} / {} (rel. err {eg:.2e}, {el:.2e})",
        got["grad_norm"],
        got["loss"],
        want["grad_norm"],
        want["loss"]
    );
    assert_eq!(got["num_tokens"], want["num_tokens"]);
}

fn pref(prompt: &str, chosen: &str, rejected: &str, strength: Option<f64>) -> Preference {
    Preference {
        prompt: Text::Plain(prompt.into()),
        chosen: Text::Plain(chosen.into()),
        rejected: Text::Plain(rejected.into()),
        margin: None,
        strength,
        reference: None,
        meta: Meta::default(),
    }
}

/// A soft label p = 0.5 says neither response is preferred: the loss must not change when
/// chosen and rejected swap places.
#[test]
fn reward_soft_label_one_half_is_symmetric_in_chosen_and_rejected() {
    let tok = HfTokenizer::from_dir(model_dir("llama-rm")).unwrap();
    let pad = tok.pad_id_or_eos().unwrap();
    let rows = [("The sky is", " blue.", " a large green dog"), ("2 + 2 =", " 4", " five, probably")];
    let batch = |swap: bool, p: Option<f64>| {
        let ids: Vec<_> = rows
            .iter()
            .map(|(q, c, r)| {
                let (c, r) = if swap { (r, c) } else { (c, r) };
                tokenize_reward(&tok, &pref(q, c, r, p)).unwrap()
            })
            .collect();
        collate_reward(&ids, pad, None)
    };
    let model = load("llama-rm", true);
    let opt = optimizer(&model);
    let trainer = RewardTrainer::new(model, opt, RewardLossConfig::default());
    let loss = |swap, p| trainer.loss(&batch(swap, p)).unwrap().1["loss"];
    let (fwd, back) = (loss(false, Some(0.5)), loss(true, Some(0.5)));
    assert!(rel_err(fwd, back) < 1e-6, "p = 0.5: loss {fwd} with chosen first, {back} swapped");
    // p = 1 is the hard label (TRL's loss), which is not symmetric on these scores.
    let (hard, none) = (loss(false, Some(1.0)), loss(false, None));
    assert!(rel_err(hard, none) < 1e-6, "p = 1 gives {hard}, no label {none}");
    assert!(rel_err(none, loss(true, None)) > 1e-3);
}

/// DPO's sigmoid and robust losses read the batch's soft labels: at p = 0.5 swapping the
/// chosen and rejected rows leaves the loss unchanged.
#[test]
fn dpo_soft_label_one_half_is_symmetric_in_chosen_and_rejected() {
    // Two pairs: prompt [5, 6] then completions of different lengths.
    let rows = [vec![5, 6, 30, 31, 0], vec![5, 6, 40, 0, 3], vec![9, 10, 11, 50, 0], vec![9, 10, 11, 60, 61]];
    let masks = [vec![0, 0, 1, 1, 1], vec![0, 0, 1, 1, 0], vec![0, 0, 0, 1, 1], vec![0, 0, 0, 1, 1]];
    let attn = [vec![1, 1, 1, 1, 1], vec![1, 1, 1, 1, 0], vec![1, 1, 1, 1, 1], vec![1, 1, 1, 1, 1]];
    // Batch rows: chosen of pair 0, chosen of pair 1, rejected of pair 0, rejected of pair 1.
    let batch = |order: [usize; 4], strength: Option<Vec<f64>>| PreferenceBatch {
        input_ids: order.iter().map(|&i| rows[i].clone()).collect(),
        attention_mask: order.iter().map(|&i| attn[i].clone()).collect(),
        completion_mask: order.iter().map(|&i| masks[i].clone()).collect(),
        margin: None,
        strength,
        ref_logps: None,
    };
    let half = Some(vec![0.5, 0.5]);
    for (lt, ls) in [(DpoLossType::Sigmoid, 0.0), (DpoLossType::Robust, 0.1)] {
        let cfg = DpoConfig { beta: 2.0, label_smoothing: ls, ..DpoConfig::with_loss(lt) };
        let policy = load("llama", true);
        // A reference different from the policy, so that the margins are not zero.
        let reference = Reference::Model(Box::new(load("qwen2", false)));
        let opt = optimizer(&policy);
        let trainer = DpoTrainer::new(policy, reference, cfg, opt).unwrap();
        let loss = |b: &PreferenceBatch| trainer.loss(b, None).unwrap().1["loss"];
        let fwd = loss(&batch([0, 2, 1, 3], half.clone()));
        let back = loss(&batch([1, 3, 0, 2], half.clone()));
        assert!(rel_err(fwd, back) < 1e-5, "{lt:?}, p = 0.5: loss {fwd} with chosen first, {back} swapped");
        let hard = loss(&batch([0, 2, 1, 3], None));
        let ones = loss(&batch([0, 2, 1, 3], Some(vec![1.0, 1.0])));
        assert!(rel_err(hard, ones) < 1e-6, "{lt:?}: p = 1 gives {ones}, no label {hard}");
        assert!(rel_err(hard, loss(&batch([1, 3, 0, 2], None))) > 1e-4, "{lt:?}: the margins are not zero");
    }
}

/// Tied responses (equal grades) have no order: the listwise loss must not depend on which
/// of them comes first in the file.
#[test]
fn plackett_luce_does_not_depend_on_the_file_order_of_tied_responses() {
    let model = load("llama-rm", true);
    let opt = optimizer(&model);
    let trainer = ListwiseRewardTrainer::new(model, opt);
    let (a, b, c, d) = (vec![5, 6, 7, 30], vec![5, 6, 7, 40, 41], vec![5, 6, 7, 50], vec![5, 6, 7, 60, 61, 62]);
    let loss = |items: Vec<Vec<u32>>, grades: Vec<f64>| {
        let batch = collate_ranked_reward(&[RankedRewardIds { items, grades }], 3);
        trainer.loss(&batch).unwrap().1["loss"]
    };
    // Ties at the top, in the middle and at the bottom.
    for grades in [vec![2.0, 2.0, 1.0, 0.0], vec![2.0, 1.0, 1.0, 0.0], vec![2.0, 1.0, 0.0, 0.0]] {
        let items = vec![a.clone(), b.clone(), c.clone(), d.clone()];
        let tied: Vec<usize> = (0..3).filter(|&i| grades[i] == grades[i + 1]).collect();
        let mut swapped = items.clone();
        swapped.swap(tied[0], tied[0] + 1);
        let (x, y) = (loss(items, grades.clone()), loss(swapped, grades.clone()));
        assert!(rel_err(x, y) < 1e-6, "grades {grades:?}: loss {x} in file order, {y} with the tie swapped");
    }
}
