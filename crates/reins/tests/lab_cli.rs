//! `reins lab`: the registry lists every experiment, and `run all --reduced --seeds 2` writes,
//! for each, a result.json whose numbers are finite and whose verdict is one of the three words.

use std::process::Command;

fn reins(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reins")).args(args).output().unwrap()
}

#[test]
fn list_names_every_experiment_with_its_paper_and_rule() {
    let out = reins(&["lab", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 4, "{rows:?}");
    for r in rows {
        for k in ["id", "claim", "metric", "rule", "expected_direction"] {
            assert!(r[k].as_str().is_some_and(|s| !s.is_empty()), "{k} missing in {r}");
        }
        assert!(r["paper"]["arxiv"].as_str().is_some_and(|s| s.contains('.')), "{r}");
    }
    let text = reins(&["lab", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("reward_overoptimization"));
}

#[test]
fn an_unknown_id_or_config_key_says_what_to_do() {
    let out = reins(&["lab", "run", "no_such_claim", "--reduced"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("reins lab list") && !err.contains("panicked"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[knobs]\nflip_rat = 0.1\n").unwrap();
    let out = reins(&["lab", "run", "quickstart", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("flip_rat") && !err.contains("panicked"), "{err}");
}

#[test]
fn run_all_reduced_over_two_seeds_gives_finite_results_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["lab", "run", "all", "--reduced", "--seeds", "2", "--out"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "lab failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let list: serde_json::Value = serde_json::from_slice(&reins(&["lab", "list", "--json"]).stdout).unwrap();
    for e in list.as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let path = out.join(id).join("result.json");
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(r["id"], id);
        assert!(["reproduced", "not shown", "contradicted"].contains(&r["verdict"].as_str().unwrap()), "{r}");
        assert_eq!(r["reduced"], true);
        assert_eq!(r["seeds"], serde_json::json!([0, 1]));
        // A Student-t interval over seeds, or a coverage rate's binomial band (E11b).
        assert!(r["rule"].as_str().is_some_and(|s| s.contains("95 %") || s.contains("99 % binomial band")), "{r}");
        assert!(r["config_hash"].as_str().is_some_and(|s| s.len() == 16), "{r}");
        assert!(r["commit"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        let arms = r["arms"].as_array().unwrap();
        assert!(arms.len() >= 2, "{r}");
        for row in arms.iter().chain(r["extras"].as_array().unwrap()) {
            let per = row["per_seed"].as_array().unwrap();
            assert_eq!(per.len(), 2, "{row}");
            assert!(per.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)), "{id}: {row}");
        }
        let stat = r["decision"]["per_seed"].as_array().unwrap();
        assert!(stat.iter().all(|x| x.as_f64().is_some_and(f64::is_finite)), "{id}: {r}");
        let html = std::fs::read_to_string(out.join(id).join("report.html")).unwrap();
        assert!(html.contains("<svg") && !html.contains("http"), "{id}");
        assert!(out.join(id).join("summary.md").exists() && out.join(id).join("config.toml").exists());
    }
    assert!(stdout.contains("| experiment | verdict |"), "{stdout}");

    // A rerun with the same settings reuses every finished seed (a stopped full run resumes).
    let id = "ensembles_beat_a_single_rm";
    let before = std::fs::read_to_string(out.join(id).join("result.json")).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["lab", "run", id, "--reduced", "--seeds", "2", "--out"])
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && stderr.matches("reusing").count() == 2, "{stderr}");
    assert!(!stderr.contains("== reward model"), "{stderr}");
    let after = std::fs::read_to_string(out.join(id).join("result.json")).unwrap();
    let decision = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["decision"].clone();
    assert_eq!(decision(&after), decision(&before));
}
