//! Online RL trainers end to end on a tiny random Llama: each method raises a rule reward
//! (the fraction of completion tokens below `TARGET`, ~0.25 for the initial policy) within a
//! few seconds on CPU; losses finite, every trainable parameter moved, TRL metrics logged.

use candle_core::Device;
use reins_model::init::{llama_config, random_weights};
use reins_model::{LoadOptions, Model, ModelConfig};
use reins_train::best_of_n::best_of_n;
use reins_train::config::TrainingArgs;
use reins_train::losses::GrpoLossConfig;
use reins_train::losses::GrpoLossType;
use reins_train::losses::{DpoConfig, InpoConfig};
use reins_train::optim::optimizer::{OptimConfig, Optimizer};
use reins_train::rewards::{ModelReward, RewardSource, RuleReward};
use reins_train::rl::PolicyFilter;
use reins_train::rl::ScaleRewards;
use reins_train::run::{self, Quiet};
use reins_train::trainers::dpo::Reference;
use reins_train::trainers::grpo::{GrpoConfig, GrpoTrainer};
use reins_train::trainers::iterative_dpo::{IterativeDpoConfig, IterativeDpoTrainer, PairObjective, ReferencePolicy};
use reins_train::trainers::nash_md::{NashMdConfig, NashMdTrainer, Preferences};
use reins_train::trainers::online_dpo::{OnlineDpoConfig, OnlineDpoTrainer};
use reins_train::trainers::ppo::{PpoConfig, PpoTrainer};
use reins_train::trainers::remax::{RemaxConfig, RemaxTrainer};
use reins_train::trainers::rloo::{AdvantageEstimator, RlooConfig, RlooTrainer};
use reins_train::trainers::rollout::{rollout, token_rewards_tensor};
use reins_train::trainers::Metrics;

const VOCAB: usize = 32;
const TARGET: u32 = 8;
const STEPS: usize = 30;

fn tiny(trainable: bool, score_head: Option<usize>) -> Model {
    tiny_with(LoadOptions { trainable, score_head, ..Default::default() })
}

fn tiny_with(opts: LoadOptions) -> Model {
    let cfg = ModelConfig::from_value(llama_config(VOCAB, 32, 1, 2, 2, 64, 64)).unwrap();
    let mut w = random_weights(&cfg, 7, &Device::Cpu).unwrap();
    Model::from_weights(cfg, &mut w, &Device::Cpu, &opts).unwrap()
}

fn reward() -> Box<dyn RewardSource> {
    Box::new(RuleReward::named("low_tokens", |_, c| {
        c.iter().filter(|&&t| t < TARGET).count() as f32 / c.len().max(1) as f32
    }))
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![1, 20, 3], vec![30, 2], vec![5, 17, 9, 11], vec![25]]
}

fn optimizer(model: &Model, lr: f64) -> Optimizer {
    let cfg = OptimConfig {
        learning_rate: lr,
        lr_scheduler_type: reins_train::optim::SchedulerType::Constant,
        ..Default::default()
    };
    Optimizer::new(model.params(), &cfg, STEPS).unwrap()
}

fn snapshot(model: &Model) -> Vec<Vec<f32>> {
    model.params().iter().map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

/// Runs `step` STEPS times; returns (mean reward of the first 3 steps, of the last 3).
fn run(name: &str, model: &Model, mut step: impl FnMut() -> Metrics, required: &[&str]) -> (f64, f64) {
    let before = snapshot(model);
    let mut rewards = vec![];
    for i in 0..STEPS {
        let m = step();
        for key in required {
            assert!(m.contains_key(*key), "{name}: metric `{key}` missing at step {i}: {m:?}");
        }
        for (k, v) in &m {
            assert!(v.is_finite(), "{name}: {k} = {v} at step {i}");
        }
        rewards.push(m["reward"]);
    }
    let after = snapshot(model);
    for ((n, _), (a, b)) in model.params().iter().zip(before.iter().zip(&after)) {
        assert!(a.iter().zip(b).any(|(x, y)| x != y), "{name}: parameter {n} did not move");
    }
    let first = rewards[..3].iter().sum::<f64>() / 3.0;
    let last = rewards[STEPS - 3..].iter().sum::<f64>() / 3.0;
    eprintln!("{name}: reward first 3 steps {first:.3}, last 3 steps {last:.3}");
    assert!(last > first + 0.25, "{name}: reward did not improve enough: {first:.3} -> {last:.3} ({rewards:?})");
    (first, last)
}

#[test]
fn grpo_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let opt = optimizer(&policy, 1e-2);
    let cfg = GrpoConfig { num_generations: 8, ..Default::default() };
    let loss = GrpoLossConfig { max_completion_length: 8, ..Default::default() };
    let mut t = GrpoTrainer::new(policy.clone(), None, reward(), cfg, loss, opt).unwrap();
    let p = prompts();
    let keys = [
        "loss",
        "reward",
        "reward_std",
        "rewards/low_tokens/mean",
        "clip_ratio/region_mean",
        "completions/mean_length",
        "entropy",
        "grad_norm",
    ];
    run("grpo", &policy, || t.train_step(std::slice::from_ref(&p)).unwrap(), &keys);
    let m = t.evaluate(&p).unwrap();
    assert_eq!(m["completions/mean_length"], 8.0);
}

#[test]
fn dr_grpo_with_kl_and_two_iterations_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 1e-2);
    let cfg =
        GrpoConfig { num_generations: 8, scale_rewards: ScaleRewards::None, num_iterations: 2, ..Default::default() };
    let loss =
        GrpoLossConfig { beta: 0.02, loss_type: GrpoLossType::DrGrpo, max_completion_length: 8, ..Default::default() };
    let mut t = GrpoTrainer::new(policy.clone(), Some(reference), reward(), cfg, loss, opt).unwrap();
    let p = prompts();
    let (a, b) = (p[..2].to_vec(), p[2..].to_vec());
    let mut kls = vec![];
    run(
        "dr_grpo+kl",
        &policy,
        || {
            let m = t.train_step(&[a.clone(), b.clone()]).unwrap();
            kls.push(m["kl"]);
            m
        },
        &["kl", "clip_ratio/low_mean", "clip_ratio/high_mean"],
    );
    // The policy drifts from the reference: k3 KL ≥ 0 and grows from ~0.
    assert!(kls.iter().all(|&k| k >= -1e-6), "{kls:?}");
    assert!(kls[STEPS - 1] > kls[0]);
}

#[test]
fn grpo_needs_a_reference_when_beta_is_set() {
    let policy = tiny(true, None);
    let opt = optimizer(&policy, 1e-3);
    let loss = GrpoLossConfig { beta: 0.1, ..Default::default() };
    assert!(GrpoTrainer::new(policy.clone(), None, reward(), GrpoConfig::default(), loss, opt).is_err());
    let opt = optimizer(&policy, 1e-3);
    let cfg = GrpoConfig { num_generations: 1, ..Default::default() };
    assert!(GrpoTrainer::new(policy, None, reward(), cfg, GrpoLossConfig::default(), opt).is_err());
}

#[test]
fn rloo_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 1e-2);
    let cfg = RlooConfig { num_generations: 4, max_completion_length: 8, ..Default::default() };
    let mut t = RlooTrainer::new(policy.clone(), Some(reference), reward(), cfg, opt).unwrap();
    let p = prompts();
    run("rloo", &policy, || t.train_step(std::slice::from_ref(&p)).unwrap(), &["loss", "kl", "reward", "entropy"]);
}

#[test]
fn reinforce_pp_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let opt = optimizer(&policy, 1e-2);
    let cfg = RlooConfig {
        num_generations: 4,
        beta: 0.0,
        advantage_estimator: AdvantageEstimator::ReinforcePp,
        max_completion_length: 8,
        ..Default::default()
    };
    let mut t = RlooTrainer::new(policy.clone(), None, reward(), cfg, opt).unwrap();
    let p = prompts();
    run("reinforce_pp", &policy, || t.train_step(std::slice::from_ref(&p)).unwrap(), &["loss", "policy/approxkl"]);
}

#[test]
fn model_reward_scores_the_last_token_regardless_of_padding() {
    let rm = ModelReward::new(tiny(false, Some(1))).unwrap();
    let prompts = vec![vec![1, 2, 3], vec![4]];
    let completions = vec![vec![5, 6], vec![7, 8, 9, 10, 11]];
    let batched = rm.score(&prompts, &completions).unwrap();
    assert_eq!(batched.len(), 2);
    for i in 0..2 {
        let alone = rm.score(&prompts[i..=i], &completions[i..=i]).unwrap()[0];
        assert!((alone - batched[i]).abs() < 1e-5, "row {i}: {alone} vs {}", batched[i]);
    }
    assert!(ModelReward::new(tiny(false, None)).is_err());
}

#[test]
fn rollout_layout_and_token_rewards_line_up() {
    let policy = tiny(false, None);
    let s = GrpoConfig { num_generations: 2, ..Default::default() }.sampling(4, 0);
    let r = rollout(&policy, &[vec![1, 2], vec![3]], 2, &s, false).unwrap();
    assert_eq!(r.prompts, vec![vec![1, 2], vec![1, 2], vec![3], vec![3]]);
    for i in 0..4 {
        let (p, c) = (&r.prompts[i], &r.completions[i]);
        assert_eq!(c.len(), 4);
        assert_eq!(&r.input_ids[i][..p.len() + c.len()], [p.as_slice(), c].concat().as_slice());
        assert_eq!(r.completion_mask[i].iter().map(|&x| x as usize).sum::<usize>(), c.len());
        assert_eq!(r.attention_mask[i].iter().map(|&x| x as usize).sum::<usize>(), p.len() + c.len());
    }
    // The sampler's log-probs are the policy's (temperature 1).
    let (logps, mask, _) = reins_train::trainers::rollout::completion_token_logps(&policy, &r, 1.0).unwrap();
    let lp = logps.to_vec2::<f32>().unwrap();
    let mk = mask.to_vec2::<f32>().unwrap();
    for i in 0..4 {
        let got: Vec<f32> = lp[i].iter().zip(&mk[i]).filter(|(_, m)| **m > 0.0).map(|(&x, _)| x).collect();
        for (a, b) in got.iter().zip(&r.sampler_logps[i]) {
            assert!((a - b).abs() < 1e-4, "row {i}: {got:?} vs {:?}", r.sampler_logps[i]);
        }
    }
    // The completion-only path (LM head on completion positions) agrees, entropy included.
    use reins_train::trainers::rollout::{completion_entropy, completion_only_token_logps};
    for temperature in [1.0, 0.7] {
        let (dense, _, logits) =
            reins_train::trainers::rollout::completion_token_logps(&policy, &r, temperature).unwrap();
        let (sparse, sparse_mask, entropy) = completion_only_token_logps(&policy, &r, temperature).unwrap();
        let diff = (dense - sparse).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "log-probs differ by {diff}");
        assert_eq!(sparse_mask.to_vec2::<f32>().unwrap(), mk);
        let want = completion_entropy(&logits, &mask).unwrap();
        assert!((entropy - want).abs() < 1e-5, "entropy {entropy} vs {want}");
    }
    // Per-token rewards land on the completion positions of the log-prob grid.
    let vals: Vec<Vec<f32>> = (0..4).map(|i| (1..=4).map(|j| (10 * i + j) as f32).collect()).collect();
    let tr = token_rewards_tensor(&r, &vals, &Device::Cpu).unwrap();
    let sums = (tr.clone() * &mask).unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    let all = tr.sum(1).unwrap().to_vec1::<f32>().unwrap();
    for i in 0..4 {
        let want: f32 = vals[i].iter().sum();
        assert_eq!(sums[i], want);
        assert_eq!(all[i], want);
    }
}

#[test]
fn ppo_with_a_value_head_improves_a_rule_reward() {
    let policy = tiny_with(LoadOptions { trainable: true, value_head: true, ..Default::default() });
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 1e-2);
    let cfg = PpoConfig {
        response_length: 8,
        temperature: 1.0,
        kl_coef: 0.01,
        adap_kl_ctrl: true,
        target: 1.0,
        horizon: 100.0,
        ..Default::default()
    };
    let mut t = PpoTrainer::new(policy.clone(), None, reference, reward(), cfg, opt).unwrap();
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(16).collect();
    let keys = [
        "objective/kl",
        "objective/scores",
        "loss/policy_avg",
        "loss/value_avg",
        "val/clipfrac_avg",
        "objective/kl_coef",
    ];
    run("ppo", &policy, || t.train_step(&p).unwrap(), &keys);
    assert_ne!(t.kl_ctl.value(), 0.01, "the adaptive controller moved");
    let no_head = tiny(true, None);
    let opt = optimizer(&no_head, 1e-3);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    assert!(PpoTrainer::new(no_head, None, reference, reward(), PpoConfig::default(), opt).is_err());
}

/// MA-RLHF's macro actions: one-token macros (`fixed`, `ngram = 1`) are plain PPO to the last
/// bit, and fixed 3-grams and perplexity-cut macros still raise a rule reward.
#[test]
fn ppo_with_macro_actions_matches_ppo_at_one_token_and_improves_a_rule_reward() {
    use reins_train::rl::macro_actions::Termination;
    let base = PpoConfig { response_length: 8, temperature: 1.0, kl_coef: 0.01, ..Default::default() };
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(16).collect();
    let trainer = |cfg: PpoConfig| {
        let policy = tiny_with(LoadOptions { trainable: true, value_head: true, ..Default::default() });
        let reference = Reference::Model(Box::new(tiny(false, None)));
        let opt = optimizer(&policy, 1e-2);
        PpoTrainer::new(policy, None, reference, reward(), cfg, opt).unwrap()
    };
    let (mut plain, mut one) = (
        trainer(base.clone()),
        trainer(PpoConfig { termination_condition: Termination::Fixed, ngram: 1, ..base.clone() }),
    );
    for _ in 0..3 {
        let (a, b) = (plain.train_step(&p).unwrap(), one.train_step(&p).unwrap());
        for k in ["loss/policy_avg", "loss/value_avg", "objective/kl"] {
            assert!((a[k] - b[k]).abs() <= 1e-6 * a[k].abs().max(1.0), "{k}: {} vs {}", a[k], b[k]);
        }
    }
    for (name, termination) in [("ma_ppo_fixed3", Termination::Fixed), ("ma_ppo_ppl", Termination::Ppl)] {
        let mut t = trainer(PpoConfig { termination_condition: termination, ngram: 3, ..base.clone() });
        let policy = t.policy.clone();
        run(name, &policy, || t.train_step(&p).unwrap(), &["loss/policy_avg", "loss/value_avg"]);
    }
    let bad = PpoConfig { termination_condition: Termination::Fixed, ngram: 0, ..base };
    assert!(bad.validate().is_err());
}

#[test]
fn ppo_with_best_worst_policy_filtration_improves_a_rule_reward() {
    let policy = tiny_with(LoadOptions { trainable: true, value_head: true, ..Default::default() });
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 1e-2);
    let cfg = PpoConfig {
        response_length: 8,
        temperature: 1.0,
        kl_coef: 0.01,
        pf_filter: PolicyFilter::BestWorst,
        pf_num_samples: 4,
        ..Default::default()
    };
    let mut t = PpoTrainer::new(policy.clone(), None, reference, reward(), cfg, opt).unwrap();
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
    let mut kept = vec![];
    run(
        "pf_ppo",
        &policy,
        || {
            let m = t.train_step(&p).unwrap();
            kept.push(m["pf/kept_fraction"]);
            // the update sees the filtered rows: best and worst of 4 (fewer when a group ties)
            assert_eq!(m["completions/mean_length"], 8.0);
            m
        },
        &["pf/reward_before_filter", "pf/kept_fraction", "objective/kl"],
    );
    assert!(kept.iter().all(|&k| k > 0.0 && k <= 0.5), "{kept:?}");
    let bad = PpoConfig { pf_filter: PolicyFilter::BestWorst, ..Default::default() };
    assert!(bad.validate().is_err(), "a filter needs pf_num_samples ≥ 2");
    let band = PpoConfig { pf_filter: PolicyFilter::RewardBand, pf_num_samples: 4, ..Default::default() };
    assert!(band.validate().is_err(), "reward_band needs bands");
}

/// The pairwise-judge path of online DPO, iterative DPO and INPO: the reward as a judge
/// (`RewardJudge`, chosen when `P ≥ ½`; best and worst of a round-robin tournament) picks the
/// same pairs as the reward itself, so three steps give the same weights; the judge runs log
/// no score keys.
#[test]
fn a_reward_as_a_judge_trains_online_and_iterative_dpo_like_the_reward() {
    use reins_train::judges::{Preferences, RewardJudge};
    let judge = || Preferences::Judge(Box::new(RewardJudge { reward: reward() }));
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
    let weights = |m: &Model| snapshot(m);
    let online = |prefs: Preferences| {
        let policy = tiny(true, None);
        let cfg = OnlineDpoConfig { max_new_tokens: 8, temperature: 1.0, ..Default::default() };
        let reference = Reference::Model(Box::new(tiny(false, None)));
        let mut t = OnlineDpoTrainer::new(
            policy.clone(),
            reference,
            prefs,
            cfg,
            DpoConfig::default(),
            optimizer(&policy, 1e-2),
        )
        .unwrap();
        let ms: Vec<Metrics> = (0..3).map(|_| t.train_step(std::slice::from_ref(&p)).unwrap()).collect();
        (weights(&t.policy), ms)
    };
    let (a, ma) = online(Preferences::Reward(reward()));
    let (b, mb) = online(judge());
    assert!(a == b, "online DPO: the judge picked other pairs than the reward");
    assert!(ma[0].contains_key("objective/scores") && !mb[0].contains_key("objective/scores"));
    assert_eq!(ma[2]["rewards/margins"], mb[2]["rewards/margins"]);

    for objective in [PairObjective::Dpo(DpoConfig::default()), PairObjective::Inpo(InpoConfig { eta: 0.1, tau: None })]
    {
        let rounds = |prefs: Preferences| {
            let policy = tiny(true, None);
            let cfg =
                IterativeDpoConfig { num_generations: 4, dpo_batch_size: 4, max_new_tokens: 8, ..Default::default() };
            let optim = OptimConfig { learning_rate: 1e-2, ..Default::default() };
            let reference = Reference::Model(Box::new(tiny(false, None)));
            let mut t = IterativeDpoTrainer::new(policy, reference, prefs, cfg, objective.clone(), optim).unwrap();
            let pairs: Vec<f64> = (0..3).map(|_| t.round(&p).unwrap()["pairs"]).collect();
            (weights(&t.policy), pairs)
        };
        let (a, pa) = rounds(Preferences::Reward(reward()));
        let (b, pb) = rounds(judge());
        assert_eq!(pa, pb, "{objective:?}");
        assert!(pa.iter().sum::<f64>() > 0.0);
        assert!(a == b, "{objective:?}: the tournament picked other pairs than the reward");
    }
}

#[test]
fn online_dpo_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 1e-2);
    let cfg = OnlineDpoConfig { max_new_tokens: 8, temperature: 1.0, ..Default::default() };
    let mut t = OnlineDpoTrainer::new(policy.clone(), reference, reward(), cfg, DpoConfig::default(), opt).unwrap();
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(16).collect();
    let keys = [
        "loss",
        "objective/kl",
        "objective/entropy",
        "objective/non_score_reward",
        "objective/rlhf_reward",
        "objective/scores",
        "objective/scores_margin",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "val/contain_eos_token",
        "beta",
    ];
    let mut margins = vec![];
    run(
        "online_dpo",
        &policy,
        || {
            let m = t.train_step(std::slice::from_ref(&p)).unwrap();
            margins.push(m["objective/scores_margin"]);
            m
        },
        &keys,
    );
    assert!(margins.iter().all(|&x| x >= 0.0), "chosen never scores below rejected: {margins:?}");
}

#[test]
fn iterative_dpo_improves_a_rule_reward_over_rounds() {
    for mode in [ReferencePolicy::Initial, ReferencePolicy::RoundStart] {
        let policy = tiny(true, None);
        let reference = Reference::Model(Box::new(tiny(false, None)));
        let cfg = IterativeDpoConfig {
            num_generations: 4,
            num_dpo_epochs: 2,
            dpo_batch_size: 4,
            reference_policy: mode,
            max_new_tokens: 8,
            ..Default::default()
        };
        let optim = OptimConfig {
            learning_rate: 1e-2,
            lr_scheduler_type: reins_train::optim::SchedulerType::Constant,
            ..Default::default()
        };
        let mut t = IterativeDpoTrainer::new(
            policy.clone(),
            reference,
            reward(),
            cfg,
            PairObjective::Dpo(DpoConfig::default()),
            optim,
        )
        .unwrap();
        let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
        let before = snapshot(&policy);
        let mut rewards = vec![];
        for round in 0..8 {
            let m = t.round(&p).unwrap();
            for (k, v) in &m {
                assert!(v.is_finite(), "{mode:?}: {k} = {v}");
            }
            // one pair per prompt at most; none when all its samples tie
            assert!(m["pairs"] <= 8.0 && (round > 0 || m["pairs"] > 0.0), "{m:?}");
            rewards.push(m["reward"]);
        }
        assert!(snapshot(&policy) != before);
        let (first, last) = (rewards[0], rewards[7]);
        eprintln!("iterative_dpo {mode:?}: reward round 1 {first:.3}, round 8 {last:.3} ({rewards:?})");
        assert!(last > first + 0.25, "{mode:?}: {rewards:?}");
    }
}

/// INPO's rounds (iterative DPO's sampling and pairs, INPO's squared loss) raise a rule
/// reward; every metric is finite, `h` starts at 0 (the policy is both `π_ref` and `π_t` before
/// the first step) and moves toward the target `1/(2η)`; a round-start reference is refused.
#[test]
fn inpo_improves_a_rule_reward_over_rounds() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let cfg = IterativeDpoConfig {
        num_generations: 4,
        num_dpo_epochs: 2,
        dpo_batch_size: 4,
        max_new_tokens: 8,
        ..Default::default()
    };
    let optim = OptimConfig {
        learning_rate: 1e-2,
        lr_scheduler_type: reins_train::optim::SchedulerType::Constant,
        ..Default::default()
    };
    let inpo = InpoConfig { eta: 0.1, tau: None };
    let bad = IterativeDpoConfig { reference_policy: ReferencePolicy::RoundStart, ..cfg.clone() };
    let refused = IterativeDpoTrainer::new(
        policy.clone(),
        Reference::Model(Box::new(tiny(false, None))),
        reward(),
        bad,
        PairObjective::Inpo(inpo.clone()),
        optim.clone(),
    );
    assert!(refused.err().is_some_and(|e| e.to_string().contains("reference_policy")));
    let mut t =
        IterativeDpoTrainer::new(policy.clone(), reference, reward(), cfg, PairObjective::Inpo(inpo), optim).unwrap();
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
    let mut rewards = vec![];
    for round in 0..8 {
        let m = t.round(&p).unwrap();
        for (k, v) in &m {
            assert!(v.is_finite(), "inpo round {round}: {k} = {v}");
        }
        if m["pairs"] > 0.0 {
            assert_eq!(m["inpo/target"], 5.0);
            // the round's mean h lies between its start (0) and past the target at most a little
            assert!(m["inpo/h"] > 0.0, "round {round}: {m:?}");
        }
        rewards.push(m["reward"]);
    }
    let (first, last) = (rewards[0], rewards[7]);
    eprintln!("inpo: reward round 1 {first:.3}, round 8 {last:.3} ({rewards:?})");
    assert!(last > first + 0.25, "{rewards:?}");
}

/// Nash-MD raises a rule reward against its mixture opponent, with the reward's Bradley–Terry
/// probability and with the same reward as a pairwise judge (the judge path gives the same
/// probabilities, so the same run); `P(y ≻ y')` and every metric stay in range. The rule is
/// scaled ×10 so that `σ(r(y) − r(y'))` is decisive.
#[test]
fn nash_md_improves_a_rule_reward_with_a_reward_or_a_judge() {
    let sharp = || -> Box<dyn RewardSource> {
        Box::new(RuleReward::named("low_tokens_x10", |_, c| {
            10.0 * c.iter().filter(|&&t| t < TARGET).count() as f32 / c.len().max(1) as f32
        }))
    };
    let mut finals = vec![];
    for judge in [false, true] {
        let policy = tiny(true, None);
        let reference = Reference::Model(Box::new(tiny(false, None)));
        let cfg = NashMdConfig { mixture_coef: 0.125, ..Default::default() };
        let sampling = OnlineDpoConfig { max_new_tokens: 8, temperature: 1.0, ..Default::default() };
        let prefs = if judge {
            Preferences::Judge(Box::new(reins_train::judges::RewardJudge { reward: sharp() }))
        } else {
            Preferences::Reward(sharp())
        };
        let mut t =
            NashMdTrainer::new(policy.clone(), reference, prefs, cfg, sampling, optimizer(&policy, 1e-2)).unwrap();
        let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
        let mut probs = vec![];
        for _ in 0..20 {
            let m = t.train_step(std::slice::from_ref(&p)).unwrap();
            for (k, v) in &m {
                assert!(v.is_finite(), "{k} = {v}");
            }
            assert!((0.0..=1.0).contains(&m["rewards/probabilities"]));
            assert_eq!(m.contains_key("rewards/chosen"), !judge, "{m:?}");
            probs.push(m["rewards/probabilities"]);
        }
        let before = reins_train::trainers::rollout::rollout(
            &tiny(false, None),
            &p,
            4,
            &reins_model::SamplingConfig { max_new_tokens: 8, seed: 5, ..Default::default() },
            false,
        )
        .unwrap();
        let after = reins_train::trainers::rollout::rollout(
            &t.policy,
            &p,
            4,
            &reins_model::SamplingConfig { max_new_tokens: 8, seed: 5, ..Default::default() },
            false,
        )
        .unwrap();
        let score = |r: &reins_train::trainers::rollout::Rollout| {
            let s = reward().score(&r.prompts, &r.completions).unwrap();
            s.iter().sum::<f32>() / s.len() as f32
        };
        let (b, a) = (score(&before), score(&after));
        eprintln!(
            "nash_md (judge {judge}): reward {b:.3} -> {a:.3}; P(y > y') first {:.3} last {:.3}",
            probs[0], probs[19]
        );
        assert!(a > b + 0.2, "judge {judge}: {b} -> {a}");
        finals.push(a);
    }
    assert_eq!(finals[0], finals[1], "a reward and the same reward as a judge give the same probabilities");
    let bad = NashMdConfig { mixture_coef: -0.1, ..Default::default() };
    let p = tiny(true, None);
    let (prefs, sampling) = (Preferences::Reward(reward()), OnlineDpoConfig::default());
    let r = NashMdTrainer::new(p.clone(), Reference::AdaptersOff, prefs, bad, sampling, optimizer(&p, 1e-3));
    assert!(r.is_err());
}

#[test]
fn remax_improves_a_rule_reward() {
    let policy = tiny(true, None);
    let opt = optimizer(&policy, 1e-2);
    let cfg = RemaxConfig { num_generations: 2, max_completion_length: 8, ..Default::default() };
    let mut t = RemaxTrainer::new(policy.clone(), None, reward(), cfg, opt).unwrap();
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(8).collect();
    run("remax", &policy, || t.train_step(std::slice::from_ref(&p)).unwrap(), &["loss", "reward_greedy", "entropy"]);
    let g = t.evaluate(&p).unwrap()["reward"];
    eprintln!("remax: greedy reward after training {g:.3}");
    let bad = RemaxConfig { beta: 0.1, ..Default::default() };
    assert!(RemaxTrainer::new(tiny(true, None), None, reward(), bad, optimizer(&policy, 1e-3)).is_err());
}

fn run_args(out: &std::path::Path, max_steps: usize) -> TrainingArgs {
    TrainingArgs {
        output_dir: out.to_path_buf(),
        max_steps,
        per_device_train_batch_size: 2,
        logging_steps: 1,
        save_steps: 2,
        log_completions_steps: 1,
        ..Default::default()
    }
}

fn metric_lines(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs 4 steps straight, and 2 steps then a resume to 4; the logged metrics must agree exactly.
fn check_exact_resume<T: reins_train::run::Trainer<Batch = Vec<Vec<u32>>>>(name: &str, make: impl Fn() -> T) {
    let p = prompts();
    let collate = |idx: &[usize]| Ok(idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = serde_json::Map::new();
    run::train(&mut make(), &run_args(&a, 4), &cfg, p.len(), &collate, &[], &mut Quiet).unwrap();
    run::train(&mut make(), &run_args(&b, 2), &cfg, p.len(), &collate, &[], &mut Quiet).unwrap();
    let resumed = run::train(&mut make(), &run_args(&b, 4), &cfg, p.len(), &collate, &[], &mut Quiet).unwrap();
    assert_eq!(resumed.steps, 4);
    let (la, lb) = (metric_lines(&a), metric_lines(&b));
    assert_eq!(la.len(), 4);
    assert_eq!(la, lb, "{name}: resumed metrics differ");
    let sa = std::fs::read_to_string(a.join("samples.jsonl")).unwrap();
    assert_eq!(sa, std::fs::read_to_string(b.join("samples.jsonl")).unwrap(), "{name}: samples differ");
    assert!(sa.lines().any(|l| l.contains("\"step\":4")), "{name}: no samples of step 4");
}

#[test]
fn grpo_resume_is_exact() {
    check_exact_resume("grpo", || {
        let policy = tiny(true, None);
        let opt = optimizer(&policy, 1e-2);
        let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
        let loss = GrpoLossConfig { max_completion_length: 6, ..Default::default() };
        GrpoTrainer::new(policy, None, reward(), cfg, loss, opt).unwrap()
    });
}

#[test]
fn ppo_resume_with_an_adaptive_kl_controller_is_exact() {
    check_exact_resume("ppo", || {
        let policy = tiny_with(LoadOptions { trainable: true, value_head: true, ..Default::default() });
        let reference = Reference::Model(Box::new(tiny(false, None)));
        let opt = optimizer(&policy, 1e-2);
        let cfg = PpoConfig {
            response_length: 6,
            temperature: 1.0,
            adap_kl_ctrl: true,
            target: 0.01,
            horizon: 10.0,
            num_ppo_epochs: 2,
            ..Default::default()
        };
        PpoTrainer::new(policy, None, reference, reward(), cfg, opt).unwrap()
    });
}

#[test]
fn kl_above_max_kl_stops_the_run_and_keeps_the_last_checkpoint() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 5e-2);
    let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
    let loss = GrpoLossConfig { beta: 0.04, max_completion_length: 6, ..Default::default() };
    let mut t = GrpoTrainer::new(policy, Some(reference), reward(), cfg, loss, opt).unwrap();
    let p = prompts();
    let collate = |idx: &[usize]| Ok(idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    // Step 1 samples from the reference itself (KL = 0); later steps have drifted.
    let args = TrainingArgs { max_kl: Some(1e-9), save_steps: 1, ..run_args(dir.path(), 10) };
    let err = run::train(&mut t, &args, &serde_json::Map::new(), p.len(), &collate, &[], &mut Quiet).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("max_kl") && msg.contains("checkpoint-1"), "{msg}");
    assert!(dir.path().join("checkpoint-1/trainer_state.json").exists());
    assert!(!dir.path().join("checkpoint-2").exists());
}

/// A trainer that measures no KL (GRPO at `beta = 0` without a reference) cannot honour
/// `max_kl`: the run says so instead of ignoring the limit.
#[test]
fn max_kl_without_a_measured_kl_is_an_error_not_a_silent_no_op() {
    let policy = tiny(true, None);
    let opt = optimizer(&policy, 1e-2);
    let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
    let loss = GrpoLossConfig { max_completion_length: 6, ..Default::default() };
    let mut t = GrpoTrainer::new(policy, None, reward(), cfg, loss, opt).unwrap();
    let p = prompts();
    let collate = |idx: &[usize]| Ok(idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let args = TrainingArgs { max_kl: Some(1e9), ..run_args(dir.path(), 2) };
    let r = run::train(&mut t, &args, &serde_json::Map::new(), p.len(), &collate, &[], &mut Quiet);
    let msg = r.err().map(|e| e.to_string()).unwrap_or_else(|| "the run ignored max_kl and finished".into());
    assert!(msg.contains("max_kl") && msg.contains("reference"), "{msg}");
}

/// With a reference, GRPO logs its KL (`kl`, mean per-token k3) even at `beta = 0`: the
/// reference pass is what `max_kl` needs.
#[test]
fn grpo_with_a_reference_logs_kl_at_beta_zero() {
    let policy = tiny(true, None);
    let reference = Reference::Model(Box::new(tiny(false, None)));
    let opt = optimizer(&policy, 5e-2);
    let cfg = GrpoConfig { num_generations: 4, ..Default::default() };
    let loss = GrpoLossConfig { max_completion_length: 6, ..Default::default() };
    let mut t = GrpoTrainer::new(policy, Some(reference), reward(), cfg, loss, opt).unwrap();
    let first = t.train_step(&[prompts()]).unwrap();
    assert!(first.get("kl").is_some_and(|k| k.abs() < 1e-6), "step 1 samples from the reference: {first:?}");
    let mut later = first;
    for _ in 0..3 {
        later = t.train_step(&[prompts()]).unwrap();
    }
    assert!(later.get("kl").is_some_and(|k| *k > 1e-6), "the policy moved but no KL was measured: {later:?}");
}

#[test]
fn best_of_n_keeps_the_highest_scoring_sample_of_each_prompt() {
    let policy = tiny(false, None);
    let p: Vec<Vec<u32>> = prompts().into_iter().cycle().take(12).collect();
    let s = reins_model::SamplingConfig { max_new_tokens: 8, seed: 3, ..Default::default() };
    let r = reward();
    let out = best_of_n(&policy, &p, 8, &s, r.as_ref(), 5).unwrap();
    assert_eq!(out.len(), 12);
    let (mut best, mut mean) = (0.0, 0.0);
    for (c, prompt) in out.iter().zip(&p) {
        assert_eq!(&c.prompt, prompt);
        assert_eq!((c.completions.len(), c.scores.len()), (8, 8));
        assert!(c.scores.iter().all(|&x| x <= c.best_score()));
        assert_eq!(c.scores[..c.best].iter().filter(|&&x| x == c.best_score()).count(), 0, "ties go to the first");
        let again = r.score(std::slice::from_ref(prompt), &[c.best_completion().to_vec()]).unwrap()[0];
        assert_eq!(again, c.best_score());
        best += c.best_score() as f64 / 12.0;
        mean += c.scores.iter().map(|&x| x as f64).sum::<f64>() / 96.0;
    }
    eprintln!("best_of_n: mean sample reward {mean:.3}, best-of-8 reward {best:.3}");
    assert!(best > mean + 0.1, "best-of-8 {best:.3} vs mean {mean:.3}");
    // Seeded: the same call gives the same samples; n = 1 keeps the only sample.
    assert_eq!(best_of_n(&policy, &p, 8, &s, r.as_ref(), 5).unwrap(), out);
    let one = best_of_n(&policy, &p[..2], 1, &s, r.as_ref(), 5).unwrap();
    assert!(one.iter().all(|c| c.best == 0 && c.completions.len() == 1));
    assert!(best_of_n(&policy, &p, 0, &s, r.as_ref(), 5).is_err());
}
