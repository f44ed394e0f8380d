//! `reins quickstart --reduced`: the whole pipeline (tokenizer, pretraining, SFT, simulated
//! labels, reward models, DPO, best-of-n, GRPO, PPO, online DPO, over-optimization curves,
//! gold evaluation, report) completes with finite metrics and writes a self-contained report.

use std::process::Command;

#[test]
fn reduced_quickstart_completes_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    // The reduced quickstart writing to `out`, all runs sharing one cache.
    let quickstart = |out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_reins"))
            .args(["quickstart", "--reduced", "--output-dir"])
            .arg(out)
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .unwrap()
    };
    let run = quickstart(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") || html.contains("<table"), "report has no content");
    assert!(!html.contains("http://") && !html.contains("https://"), "report must open offline");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for method in
        ["SFT", "DPO", "best-of-", "GRPO (single RM)", "GRPO (ensemble", "PPO (ensemble", "online DPO (ensemble"]
    {
        assert!(summary.contains(method), "summary lacks {method}:\n{summary}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for m in json["methods"].as_array().unwrap() {
        for k in ["mean_gold", "gold_win_rate_vs_sft", "kl_to_ref"] {
            assert!(m[k].as_f64().is_some_and(f64::is_finite), "{k} of {} is not finite: {}", m["name"], m[k]);
        }
    }
    for m in json["methods"].as_array().unwrap() {
        assert!(m["kl_to_ref"].as_f64().unwrap() >= 0.0, "KL of {} is negative: {}", m["name"], m["kl_to_ref"]);
    }
    // Over-optimization: best-of-n and GRPO, each under the single RM and the ensemble; every
    // point finite, KL never negative, best-of-n's KL growing with n.
    let curves = json["overoptimization"].as_array().unwrap();
    assert_eq!(curves.len(), 4, "{curves:?}");
    for c in curves {
        let pts = c["points"].as_array().unwrap();
        assert!(pts.len() >= 2, "{c}");
        for p in pts {
            for k in ["kl", "gold", "proxy"] {
                assert!(p[k].as_f64().is_some_and(f64::is_finite), "{k} in {c}");
            }
            assert!(p["kl"].as_f64().unwrap() >= -1e-6, "{c}");
        }
    }
    let bon = curves[0]["points"].as_array().unwrap();
    assert!(bon.windows(2).all(|w| w[1]["kl"].as_f64() > w[0]["kl"].as_f64()), "{bon:?}");
    for r in json["reward_models"].as_array().unwrap() {
        for k in ["accuracy_vs_gold", "accuracy_vs_labels"] {
            let acc = r[k].as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=1.0).contains(&acc), "{k} = {acc} in {r}");
        }
    }
    // Accuracy, best win rate, and a collapse comparison per pair of over-optimization curves.
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 4, "{targets:?}");
    assert!(targets.iter().all(|t| t["value"].as_f64().is_some_and(f64::is_finite)), "{targets:?}");

    // A second run reuses the cached tokenizer and base model (no pretraining) and, the run
    // being deterministic, prints the same table.
    let again = quickstart(&dir.path().join("out2"));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second run failed:\n{stderr}");
    assert!(!stderr.contains("== pretrain") && !stderr.contains("== tokenizer"), "cache not reused:\n{stderr}");
    let table = |s: &str| s.lines().take_while(|l| !l.starts_with("report:")).collect::<Vec<_>>().join("\n");
    assert_eq!(table(&String::from_utf8_lossy(&again.stdout)), table(&stdout), "the cached run differs");

    // A broken cache (here a truncated tokenizer) fails with the folder to delete.
    let base = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    std::fs::write(base.join("model").join("tokenizer.json"), "").unwrap();
    let broken = quickstart(&dir.path().join("out3"));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success() && stderr.contains("hint: delete"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--seeds 2`: each seed in its own folder, and `seeds.md` / `seeds.json` with every method's
/// per-seed values and a 95 % interval that contains their mean.
#[test]
fn reduced_quickstart_over_two_seeds_reports_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["quickstart", "--reduced", "--seeds", "2", "--output-dir"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    for seed in ["seed-0", "seed-1"] {
        assert!(out.join(seed).join("report.json").exists(), "{seed} has no report");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("seeds.json")).unwrap()).unwrap();
    assert_eq!(json["seeds"], serde_json::json!([0, 1]));
    let rows = json["win_rate"].as_array().unwrap();
    assert!(rows.len() >= 7, "{rows:?}");
    for r in rows {
        let per: Vec<f64> = r["per_seed"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(per.len(), 2, "{r}");
        let i = &r["interval"];
        let (mean, lo, hi) = (i["mean"].as_f64().unwrap(), i["lo"].as_f64().unwrap(), i["hi"].as_f64().unwrap());
        assert!((mean - (per[0] + per[1]) / 2.0).abs() < 1e-9 && lo <= mean && mean <= hi, "{r}");
    }
    let md = std::fs::read_to_string(out.join("seeds.md")).unwrap();
    assert!(md.contains("over seeds 0, 1") && md.contains("of 2 |"), "{md}");
    assert!(stdout.contains("summary over seeds:"), "{stdout}");
}
