//! `reins principle-reward --config FILE.toml`: a principle reward model for RLBFF (Wang et al.,
//! arXiv:2509.21319) from yes/no principle checks of single responses — the feedback app's
//! `principles` export, `reins data principles` output from written feedback, or any
//! `{"prompt", "completion"|"response", "principles": {text: true|false|"yes"|"no"}}` rows.
//! `template` says how the principle is written after the response; every checkpoint carries
//! `principle_reward.json` (the template and the principles trained on). Use it as a reward with
//! `reward = "principles:<dir>"` (all its principles) or `"principles:<file.toml>"` (the ones
//! you choose, to steer).

use anyhow::{bail, Result};
use reins_model::Model;
use reins_train::run::{Progress, RunSummary};
use reins_train::trainers::principle_reward::{tokenize_principle_dataset, PrincipleRewardSpec};

use super::reward::Setup;
use super::train::to_json;

/// The config part `reins principle-reward` reads beside the training arguments and the optimizer.
pub fn parts() -> Vec<serde_json::Value> {
    vec![to_json(&PrincipleRewardSpec::default())]
}

pub fn train(s: Setup, model: Model, progress: &mut dyn Progress) -> Result<RunSummary> {
    let Setup { flat, args, optim, tok, pad, train, eval, .. } = s;
    let mut spec: PrincipleRewardSpec = flat.part()?;
    let (data, stats, seen) = tokenize_principle_dataset(tok, train, &spec, Some(args.max_length))?;
    progress.log(&format!("tokenized: {} checks kept, dropped {:?}", stats.kept, stats.dropped));
    if data.is_empty() {
        bail!(
            "no principle checks to train on: the dataset needs rows with `prompt`, `completion` (or `response`) and \
             `principles` ({{\"<principle>\": true or false}}), as the feedback app's principles export writes; \
             written feedback becomes such rows with `reins data principles --rules FILE.toml`"
        );
    }
    for (p, (yes, no)) in &seen {
        progress.log(&format!("principle {p:?}: {yes} yes, {no} no"));
    }
    if spec.principles.is_empty() {
        spec.principles = seen.keys().cloned().collect();
    } else if let Some(p) = spec.principles.iter().find(|p| !seen.contains_key(*p)) {
        bail!("`principles` lists {p:?}, which no training row checks (the data has: {:?})", seen.keys());
    }
    let eval_data = match eval {
        Some(e) => {
            let (d, stats, _) = tokenize_principle_dataset(tok, e, &spec, Some(args.max_length))?;
            progress.log(&format!("eval: {} checks kept, dropped {:?}", stats.kept, stats.dropped));
            d
        }
        None => Vec::new(),
    };
    let files = vec![spec.to_file()?];
    super::segment_reward::train_examples(model, args, optim, pad, data, eval_data, files, to_json(&spec), progress)
}
