//! Checks a checkpoint against outputs saved by transformers: the tool a user runs to trust a
//! new model (`reins parity`), and what the parity tests assert.
//!
//! The expected file is a safetensors file with `input_ids` + `attention_mask` and any of:
//! `logits` `[B, T, V]`, `token_logps` `[B, T-1]`, `scores` `[B]` (sequence classifiers),
//! and `gen_prompt_ids` + `gen_prompt_mask` + `gen_new_ids` (greedy, left-padded generation).
//! A sibling `expected.json` with `sft_loss` and `grad_norms` adds the loss and every
//! parameter's gradient norm.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::generate::{generate, Hooks, SamplingConfig};
use crate::logprobs::{sft_loss, token_logps};
use crate::model::{Batch, LoadOptions, Model};
use crate::nn;

/// One compared quantity.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// Largest absolute difference (or relative, see `relative`); mismatching tokens for
    /// generation.
    pub max_diff: f64,
    pub tolerance: f64,
    pub relative: bool,
    /// Where the largest difference is, for the report.
    pub worst_at: String,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.max_diff <= self.tolerance
    }
}

/// All checks of one run.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    pub checks: Vec<Check>,
}

impl ParityReport {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(Check::ok)
    }

    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl std::fmt::Display for ParityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<48} {:>12} {:>10}", "tensor", "max diff", "tolerance")?;
        for c in &self.checks {
            let kind = if c.relative { "rel" } else { "abs" };
            let verdict = if c.ok() { "ok" } else { "FAIL" };
            writeln!(
                f,
                "{:<48} {:>12.3e} {:>6.0e} {kind}  {verdict}  {}",
                c.name, c.max_diff, c.tolerance, c.worst_at
            )?;
        }
        Ok(())
    }
}

/// Tolerances the reference stack itself meets (see fixtures/hf/README.md).
pub const LOGIT_TOL: f64 = 1e-4;
pub const REL_TOL: f64 = 1e-4;

fn rows_u32(t: &Tensor) -> Result<Vec<Vec<u32>>> {
    Ok(t.to_dtype(DType::I64)?
        .to_vec2::<i64>()?
        .into_iter()
        .map(|r| r.into_iter().map(|x| x as u32).collect())
        .collect())
}

fn rows_u8(t: &Tensor) -> Result<Vec<Vec<u8>>> {
    Ok(t.to_dtype(DType::I64)?
        .to_vec2::<i64>()?
        .into_iter()
        .map(|r| r.into_iter().map(|x| (x != 0) as u8).collect())
        .collect())
}

/// Max |a - b| over positions where `keep` is true, with the index of the worst one.
fn max_abs(a: &[f32], b: &[f32], keep: impl Fn(usize) -> bool) -> (f64, usize) {
    let mut worst = (0.0f64, 0usize);
    for i in 0..a.len() {
        if keep(i) {
            let d = (a[i] as f64 - b[i] as f64).abs();
            if d > worst.0 || d.is_nan() {
                worst = (if d.is_nan() { f64::INFINITY } else { d }, i);
            }
        }
    }
    worst
}

/// Loads `model_dir`, runs the stored batch and compares every stored output.
pub fn check(model_dir: &Path, expected: &Path, device: &Device) -> Result<ParityReport> {
    let exp = candle_core::safetensors::load(expected, device)
        .map_err(|e| ModelError::Format { path: expected.into(), msg: format!("cannot read safetensors: {e}") })?;
    let need = |k: &str| {
        exp.get(k).ok_or_else(|| ModelError::Format { path: expected.into(), msg: format!("has no `{k}` tensor") })
    };
    let model = Model::load(model_dir, device, &LoadOptions { trainable: true, ..Default::default() })?;
    let batch = Batch::new(rows_u32(need("input_ids")?)?, rows_u8(need("attention_mask")?)?)?;
    let t = batch.ids[0].len();
    let ids = nn::ids_tensor(&batch.ids, device)?;
    let mask = nn::mask_tensor(&batch.mask, device)?;
    let mut report = ParityReport::default();

    if let Some(want) = exp.get("scores") {
        let got = model.scores(&batch)?.flatten_all()?.to_vec1::<f32>()?;
        let want = want.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let (d, i) = max_abs(&got, &want, |_| true);
        report.checks.push(Check {
            name: "scores".into(),
            max_diff: d,
            tolerance: LOGIT_TOL,
            relative: false,
            worst_at: format!("row {i}"),
        });
    }

    if model.score.is_none() {
        let logits = model.logits(&batch)?;
        if let Some(want) = exp.get("logits") {
            let v = want.dim(2)?;
            let got = logits.flatten_all()?.to_vec1::<f32>()?;
            let want = want.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            // Only real tokens: transformers and reins number padding positions differently.
            let (d, i) = max_abs(&got, &want, |i| batch.mask[i / (t * v)][(i / v) % t] == 1);
            report.checks.push(Check {
                name: "logits".into(),
                max_diff: d,
                tolerance: LOGIT_TOL,
                relative: false,
                worst_at: format!("[{}, {}, {}]", i / (t * v), (i / v) % t, i % v),
            });
        }
        if let Some(want) = exp.get("token_logps") {
            let got = token_logps(&logits, &ids, &mask)?.flatten_all()?.to_vec1::<f32>()?;
            let want = want.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let (d, i) = max_abs(&got, &want, |_| true);
            report.checks.push(Check {
                name: "token_logps".into(),
                max_diff: d,
                tolerance: LOGIT_TOL,
                relative: false,
                worst_at: format!("[{}, {}]", i / (t - 1), i % (t - 1)),
            });
        }
        let json_path = expected.with_extension("json");
        if json_path.exists() {
            check_loss_and_grads(&model, &logits, &ids, &mask, &json_path, &mut report)?;
        }
        if let (Some(p), Some(m), Some(want)) =
            (exp.get("gen_prompt_ids"), exp.get("gen_prompt_mask"), exp.get("gen_new_ids"))
        {
            let ids = rows_u32(p)?;
            let masks = rows_u8(m)?;
            let prompts: Vec<Vec<u32>> = ids
                .iter()
                .zip(&masks)
                .map(|(r, m)| r.iter().zip(m).filter(|(_, &k)| k == 1).map(|(&x, _)| x).collect())
                .collect();
            let want = rows_u32(want)?;
            let n = want[0].len();
            let cfg = SamplingConfig { stop_on_eos: false, ..SamplingConfig::greedy(n) };
            let got = generate(&model, &prompts, &cfg, Hooks::default())?;
            let mut mismatches = 0usize;
            let mut first = String::new();
            for (r, (g, w)) in got.tokens.iter().zip(&want).enumerate() {
                for (j, (a, e)) in g.iter().zip(w).enumerate() {
                    if a != e {
                        if mismatches == 0 {
                            first = format!("row {r} token {j}: got {a}, expected {e}");
                        }
                        mismatches += 1;
                    }
                }
                mismatches += w.len().saturating_sub(g.len());
            }
            report.checks.push(Check {
                name: format!("greedy generation ({} x {n} tokens)", want.len()),
                max_diff: mismatches as f64,
                tolerance: 0.0,
                relative: false,
                worst_at: first,
            });
        }
    }
    Ok(report)
}

fn check_loss_and_grads(
    model: &Model,
    logits: &Tensor,
    ids: &Tensor,
    mask: &Tensor,
    json_path: &Path,
    report: &mut ParityReport,
) -> Result<()> {
    let text = std::fs::read_to_string(json_path).map_err(|e| ModelError::io(json_path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Format { path: json_path.into(), msg: format!("not valid JSON: {e}") })?;
    let Some(want_loss) = v.get("sft_loss").and_then(|x| x.as_f64()) else { return Ok(()) };
    let loss = sft_loss(logits, ids, mask)?;
    let got = loss.to_scalar::<f32>()? as f64;
    report.checks.push(Check {
        name: "sft_loss".into(),
        max_diff: rel(got, want_loss),
        tolerance: REL_TOL,
        relative: true,
        worst_at: format!("{got:.6} vs {want_loss:.6}"),
    });
    let Some(norms) = v.get("grad_norms").and_then(|x| x.as_object()) else { return Ok(()) };
    let grads = loss.backward()?;
    let mut worst = (0.0f64, String::new());
    let mut missing = Vec::new();
    for (name, want) in norms {
        let want = want.as_f64().unwrap_or(f64::NAN);
        let got = model
            .params()
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, var)| grads.get(var.as_tensor()))
            .map(|g| g.sqr().and_then(|s| s.sum_all()).and_then(|s| s.to_scalar::<f32>()).map(|s| (s as f64).sqrt()))
            .transpose()?;
        match got {
            Some(g) if g > 0.0 => {
                let r = rel(g, want);
                if r > worst.0 || r.is_nan() {
                    worst = (if r.is_nan() { f64::INFINITY } else { r }, format!("{name}: {g:.6e} vs {want:.6e}"));
                }
            }
            _ => missing.push(name.clone()),
        }
    }
    report.checks.push(Check {
        name: format!("grad norms ({} parameters)", norms.len()),
        max_diff: worst.0,
        tolerance: REL_TOL,
        relative: true,
        worst_at: worst.1,
    });
    report.checks.push(Check {
        name: "parameters without gradient".into(),
        max_diff: missing.len() as f64,
        tolerance: 0.0,
        relative: false,
        worst_at: missing.join(", "),
    });
    Ok(())
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}
