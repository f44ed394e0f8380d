//! Budgets of the experiment's model stages (the lead's pipeline reads them): model size,
//! pretraining, SFT, pairs, reward models, PPO, GRPO, DPO, online DPO, best-of-n, evaluation.
//! TRL's field names and (scaled) defaults.

use serde::{Deserialize, Serialize};

use super::LabConfig;

/// The tiny Llama (Hugging Face `LlamaConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Transformer blocks. Default 4.
    pub num_hidden_layers: usize,
    /// Width of the residual stream. Default 128.
    pub hidden_size: usize,
    /// Attention heads (`hidden_size` must be a multiple). Default 4.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the heads). Default 4.
    pub num_key_value_heads: usize,
    /// Width of the SwiGLU MLP. Default 512.
    pub intermediate_size: usize,
    /// Prompt plus completion never exceed this. Default 96.
    pub max_position_embeddings: usize,
    /// RoPE base. Default 10000.
    pub rope_theta: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            num_hidden_layers: 4,
            hidden_size: 128,
            num_attention_heads: 4,
            num_key_value_heads: 4,
            intermediate_size: 512,
            max_position_embeddings: 96,
            rope_theta: 10_000.0,
        }
    }
}

/// A supervised stage's budget (pretraining, SFT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainBudget {
    /// Texts (pretraining) or prompt/response pairs (SFT) drawn from the world.
    pub n_examples: usize,
    /// Optimizer steps.
    pub max_steps: usize,
    /// Sequences per step.
    pub per_device_train_batch_size: usize,
    /// AdamW peak learning rate.
    pub learning_rate: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
}

impl Default for TrainBudget {
    fn default() -> Self {
        LabConfig::default().sft
    }
}

/// Sampling the pairs that the annotators label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PairsConfig {
    /// Train-split prompts; two SFT samples per prompt make one pair. Default 8000.
    pub n_prompts: usize,
    /// Sampling temperature of the SFT policy. Default 1.0.
    pub temperature: f64,
    /// Longest completion sampled (the longest world response is ~45 tokens). Default 48.
    pub max_new_tokens: usize,
}

impl Default for PairsConfig {
    fn default() -> Self {
        PairsConfig { n_prompts: 8000, temperature: 1.0, max_new_tokens: 48 }
    }
}

/// Reward models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardModelConfig {
    /// Members of the ensemble (each on a bootstrap of the labels, its own seed). Default 3.
    pub ensemble_size: usize,
    /// Optimizer steps (about one pass over the labels at the defaults). Default 200.
    pub max_steps: usize,
    /// Pairs per optimizer step. Default 32.
    pub per_device_train_batch_size: usize,
    /// AdamW peak learning rate. Default 5e-4.
    pub learning_rate: f64,
    /// Ensemble reward = mean − `uncertainty_penalty` × std over members. Default 1.0.
    pub uncertainty_penalty: f64,
    /// Pairs of test prompts for accuracy against noiseless gold. Default 500.
    pub n_eval_pairs: usize,
}

impl Default for RewardModelConfig {
    fn default() -> Self {
        RewardModelConfig {
            ensemble_size: 3,
            max_steps: 200,
            per_device_train_batch_size: 32,
            learning_rate: 5e-4,
            uncertainty_penalty: 1.0,
            n_eval_pairs: 500,
        }
    }
}

/// PPO (TRL `PPOConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Rollout batches (0 skips the method). Default 30.
    pub max_steps: usize,
    /// Prompts per rollout batch. Default 16.
    pub per_device_train_batch_size: usize,
    /// Default 1e-4 (TRL: 3e-6 for billion-parameter models; a tiny model takes larger steps).
    pub learning_rate: f64,
    /// KL penalty coefficient. Default 0.05.
    pub kl_coef: f64,
    /// PPO ratio clip ε. Default 0.2.
    pub cliprange: f64,
    /// Value-function clip. Default 0.2.
    pub cliprange_value: f64,
    /// Weight of the value loss. Default 0.1.
    pub vf_coef: f64,
    /// Discount factor. Default 1.0.
    pub gamma: f64,
    /// GAE λ. Default 0.95.
    pub lam: f64,
    /// Optimization epochs per rollout batch. Default 4.
    pub num_ppo_epochs: usize,
    /// Rollout temperature. Default 1.0.
    pub temperature: f64,
    /// Longest completion sampled (the longest world response is ~45 tokens). Default 48.
    pub max_new_tokens: usize,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            max_steps: 30,
            per_device_train_batch_size: 16,
            learning_rate: 1e-4,
            kl_coef: 0.05,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lam: 0.95,
            num_ppo_epochs: 4,
            temperature: 1.0,
            max_new_tokens: 48,
        }
    }
}

/// GRPO (TRL `GRPOConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Optimizer steps (0 skips the method). Default 30.
    pub max_steps: usize,
    /// Prompts per step. Default 8.
    pub per_device_train_batch_size: usize,
    /// Completions per prompt (the group). Default 8.
    pub num_generations: usize,
    /// KL coefficient. Default 0.04.
    pub beta: f64,
    /// AdamW peak learning rate. Default 1e-4.
    pub learning_rate: f64,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Longest completion sampled (the longest world response is ~45 tokens). Default 48.
    pub max_completion_length: usize,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            max_steps: 30,
            per_device_train_batch_size: 8,
            num_generations: 8,
            beta: 0.04,
            learning_rate: 1e-4,
            temperature: 1.0,
            max_completion_length: 48,
        }
    }
}

/// Offline DPO on the annotators' labelled pairs (TRL `DPOConfig` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    /// KL / DPO temperature β. Default 0.1.
    pub beta: f64,
    /// Default `"sigmoid"`.
    pub loss_type: String,
    /// Optimizer steps. Default 50.
    pub max_steps: usize,
    /// Pairs per optimizer step. Default 32.
    pub per_device_train_batch_size: usize,
    /// Default 2e-4 (TRL: 1e-6; a tiny model takes larger steps).
    pub learning_rate: f64,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            beta: 0.1,
            loss_type: "sigmoid".into(),
            max_steps: 50,
            per_device_train_batch_size: 32,
            learning_rate: 2e-4,
        }
    }
}

/// Online DPO (TRL `OnlineDPOTrainer`, Guo et al., arXiv:2402.04792): every step samples two
/// completions per prompt from the current policy, the reward-model ensemble picks the
/// chosen one, and the policy takes a DPO step against the SFT reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineDpoConfig {
    /// Optimizer steps (0 skips the method). Default 30.
    pub max_steps: usize,
    /// Prompts per step (two completions each). Default 16.
    pub per_device_train_batch_size: usize,
    /// KL / DPO temperature β. Default 0.1.
    pub beta: f64,
    /// AdamW peak learning rate. Default 2e-4.
    pub learning_rate: f64,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Longest completion sampled. Default 48.
    pub max_new_tokens: usize,
}

impl Default for OnlineDpoConfig {
    fn default() -> Self {
        OnlineDpoConfig {
            max_steps: 30,
            per_device_train_batch_size: 16,
            beta: 0.1,
            learning_rate: 2e-4,
            temperature: 1.0,
            max_new_tokens: 48,
        }
    }
}

/// Best-of-n against the reward model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BestOfNConfig {
    /// Samples per prompt; KL to the SFT policy is log n − (n−1)/n. Default 16.
    pub n: usize,
}

impl Default for BestOfNConfig {
    fn default() -> Self {
        BestOfNConfig { n: 16 }
    }
}

/// Evaluation on the test prompts (held out, read by no tuning choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Held-out prompts. Default 200.
    pub n_prompts: usize,
    /// Longest completion sampled (the longest world response is ~45 tokens). Default 48.
    pub max_new_tokens: usize,
    /// Sampling temperature. Default 1.0 (the policy as sampled, as in training).
    pub temperature: f64,
    /// Points along each GRPO run (single RM, ensemble) at which gold, proxy and KL are
    /// measured on up to 64 test prompts: the over-optimization curves. Default 5.
    pub overoptimization_points: usize,
    /// Before/after example generations in the report. Default 6.
    pub n_examples: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { n_prompts: 200, max_new_tokens: 48, temperature: 1.0, overoptimization_points: 5, n_examples: 6 }
    }
}
