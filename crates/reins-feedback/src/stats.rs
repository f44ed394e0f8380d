//! Dashboard numbers, derived from the raw submissions: progress, throughput, agreement
//! (Krippendorff's alpha, Fleiss' kappa), per-annotator agreement with consensus and gold,
//! position bias, and consensus per item (the reviewer's adjudicated answer where there is
//! one, as in the `consensus` export; the votes otherwise).
use crate::agreement::{count_table, fleiss_kappa, krippendorff_alpha_interval, krippendorff_alpha_nominal};
use crate::consensus::{bradley_terry, majority, ranked_pairs};
use crate::db::{now_ms, Adjudication, Item, Submission};
use crate::tasks::{matches_gold, nominal_label, ProjectConfig, QuestionKind};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Serialize, Default)]
pub struct AnnotatorStats {
    pub annotator: String,
    pub labels: usize,
    pub skips: usize,
    pub median_time_ms: i64,
    /// Share of this annotator's nominal labels equal to the item's majority (items with ≥ 2
    /// labels and a strict majority; tied items count neither way).
    pub agreement_with_consensus: Option<f64>,
    pub gold_seen: usize,
    pub gold_accuracy: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub items: usize,
    pub gold_items: usize,
    pub items_complete: usize,
    pub labels: usize,
    pub skips: usize,
    pub labels_last_hour: usize,
    pub overlap: u32,
    pub agreement: BTreeMap<String, Value>,
    pub annotators: Vec<AnnotatorStats>,
    /// Share of pairwise wins that went to the response shown on the left (A).
    pub left_win_rate: Option<f64>,
    pub consensus: Vec<Value>,
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// `adjudicated`: the latest adjudication per item id (`review::latest_adjudications`); it
/// decides that item's consensus. Agreement and agreement with the majority count the votes.
pub fn compute(
    cfg: &ProjectConfig,
    items: &[Item],
    subs: &[Submission],
    names: &HashMap<String, String>,
    adjudicated: &HashMap<&str, &Adjudication>,
) -> Stats {
    let labels: Vec<&Submission> = subs.iter().filter(|s| s.kind == "label").collect();
    let by_item: HashMap<&str, Vec<&Submission>> = labels.iter().fold(HashMap::new(), |mut m, s| {
        m.entry(s.item_id.as_str()).or_default().push(*s);
        m
    });
    let gold: HashMap<&str, &Value> = items.iter().filter_map(|i| Some((i.id.as_str(), i.gold.as_ref()?))).collect();
    let hour_ago = now_ms() - 3_600_000;

    let mut agreement = BTreeMap::new();
    // (user, item) → did this user's labels agree with the majority, per question.
    let mut agree_counts: HashMap<&str, (usize, usize)> = HashMap::new();
    let (mut left_wins, mut wins) = (0usize, 0usize);
    for q in &cfg.questions {
        match &q.kind {
            QuestionKind::Likert { aspects, .. } => {
                for aspect in aspects {
                    // One unit per (item, response).
                    let mut units: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
                    for s in &labels {
                        for (r, v) in s.answer[&q.name][aspect].as_array().into_iter().flatten().enumerate() {
                            if let Some(v) = v.as_f64() {
                                units.entry((s.item_id.clone(), r)).or_default().push(v);
                            }
                        }
                    }
                    let units: Vec<Vec<f64>> = units.into_values().collect();
                    agreement.insert(
                        format!("{}/{aspect}", q.name),
                        json!({"krippendorff_alpha_interval": krippendorff_alpha_interval(&units)}),
                    );
                }
            }
            _ => {
                let mut units = Vec::new();
                for group in by_item.values() {
                    let votes: Vec<(&str, String)> = group
                        .iter()
                        .filter_map(|s| Some((s.user_id.as_str(), nominal_label(q, &s.answer[&q.name])?)))
                        .collect();
                    if votes.len() >= 2 {
                        let labels: Vec<String> = votes.iter().map(|v| v.1.clone()).collect();
                        if let Some((maj, _)) = majority(&labels) {
                            for (u, l) in &votes {
                                let e = agree_counts.entry(*u).or_default();
                                e.0 += usize::from(*l == maj);
                                e.1 += 1;
                            }
                        }
                        units.push(labels);
                    }
                }
                if matches!(q.kind, QuestionKind::Pairwise { .. } | QuestionKind::Ranking | QuestionKind::Thumbs) {
                    agreement.insert(
                        q.name.clone(),
                        json!({"krippendorff_alpha_nominal": krippendorff_alpha_nominal(&units), "fleiss_kappa": fleiss_kappa(&count_table(&units)), "items": units.len()}),
                    );
                }
                if matches!(q.kind, QuestionKind::Pairwise { .. }) {
                    for s in &labels {
                        if let Some(p) = s.answer[&q.name]["winner_position"].as_u64() {
                            wins += 1;
                            left_wins += usize::from(p == 0);
                        }
                    }
                }
            }
        }
    }

    let mut per_user: BTreeMap<&str, AnnotatorStats> = BTreeMap::new();
    let mut times: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut gold_hits: HashMap<&str, (usize, usize)> = HashMap::new();
    for s in subs {
        let a = per_user.entry(s.user_id.as_str()).or_default();
        if s.kind == "label" {
            a.labels += 1;
            times.entry(s.user_id.as_str()).or_default().push(s.time_ms);
            if let Some(g) = gold.get(s.item_id.as_str()) {
                let e = gold_hits.entry(s.user_id.as_str()).or_default();
                e.0 += usize::from(matches_gold(cfg, g, &s.answer));
                e.1 += 1;
            }
        } else {
            a.skips += 1;
        }
    }
    let annotators = per_user
        .into_iter()
        .map(|(uid, mut a)| {
            a.annotator = names.get(uid).cloned().unwrap_or_else(|| uid.to_string());
            a.median_time_ms = median(times.remove(uid).unwrap_or_default());
            a.agreement_with_consensus = agree_counts.get(uid).map(|(k, n)| *k as f64 / *n as f64);
            if let Some((k, n)) = gold_hits.get(uid) {
                a.gold_seen = *n;
                a.gold_accuracy = Some(*k as f64 / *n as f64);
            }
            a
        })
        .collect();

    let consensus = items
        .iter()
        .filter_map(|it| {
            let adj = adjudicated.get(it.id.as_str());
            let group: &[&Submission] = by_item.get(it.id.as_str()).map_or(&[], Vec::as_slice);
            if group.is_empty() && adj.is_none() {
                return None;
            }
            let mut c = serde_json::Map::new();
            for q in &cfg.questions {
                let decided = adj.map(|a| &a.answer[&q.name]).filter(|a| !a.is_null());
                match q.kind {
                    QuestionKind::Pairwise { .. } => {
                        let votes: Vec<String> = group.iter().filter_map(|s| nominal_label(q, &s.answer[&q.name])).collect();
                        let bt: Vec<(usize, usize, f64)> = group
                            .iter()
                            .filter_map(|s| {
                                let a = &s.answer[&q.name];
                                Some((a["winner"].as_u64()? as usize, a["loser"].as_u64()? as usize, 1.0))
                            })
                            .collect();
                        // An adjudicated answer is the consensus; `share` is then the share of
                        // the votes that agree with it.
                        let (label, share) = match decided.and_then(|a| nominal_label(q, a)) {
                            Some(d) => {
                                let agree = votes.iter().filter(|v| **v == d).count();
                                (Some(d), (!votes.is_empty()).then(|| agree as f64 / votes.len() as f64))
                            }
                            None => majority(&votes).unzip(),
                        };
                        let tie = label.is_none() && !votes.is_empty();
                        c.insert(q.name.clone(), json!({"majority": label, "share": share, "tie": tie, "bradley_terry": bradley_terry(it.responses.len().min(2), &bt)}));
                    }
                    QuestionKind::Ranking => {
                        let ranking = |a: &Value| -> Option<Vec<usize>> {
                            a["ranking"].as_array().map(|r| r.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect())
                        };
                        let order = match decided.and_then(ranking) {
                            Some(order) => order,
                            None => {
                                let ballots: Vec<Vec<usize>> = group.iter().filter_map(|s| ranking(&s.answer[&q.name])).collect();
                                ranked_pairs(it.responses.len(), &ballots)
                            }
                        };
                        c.insert(q.name.clone(), json!({"ranked_pairs": order}));
                    }
                    _ => {}
                }
            }
            let by = adj.map(|a| names.get(&a.user_id).cloned().unwrap_or_else(|| a.user_id.clone()));
            let source = if adj.is_some() { "adjudicated" } else { "majority" };
            Some(json!({"item_id": it.external_id, "labels": group.len(), "source": source,
                        "adjudicated_by": by, "consensus": c}))
        })
        .collect();

    let non_gold: Vec<&Item> = items.iter().filter(|i| i.gold.is_none()).collect();
    Stats {
        items: items.len(),
        gold_items: items.len() - non_gold.len(),
        items_complete: non_gold
            .iter()
            .filter(|i| by_item.get(i.id.as_str()).map_or(0, Vec::len) >= cfg.overlap as usize)
            .count(),
        labels: labels.len(),
        skips: subs.len() - labels.len(),
        labels_last_hour: labels.iter().filter(|s| s.created_at >= hour_ago).count(),
        overlap: cfg.overlap,
        agreement,
        annotators,
        left_win_rate: (wins > 0).then(|| left_wins as f64 / wins as f64),
        consensus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(id: &str, user: &str, answer: Value) -> Submission {
        Submission {
            id: id.into(),
            idempotency_key: id.into(),
            project_id: "p".into(),
            item_id: "i".into(),
            user_id: user.into(),
            assignment_id: id.into(),
            kind: "label".into(),
            answer,
            display_order: vec![0, 1, 2],
            skip_reason: None,
            time_ms: 0,
            created_at: 0,
        }
    }

    /// A ranking item's consensus is the adjudicated order where a reviewer set one, the
    /// ranked pairs of the ballots otherwise; agreement still counts the ballots.
    #[test]
    fn an_adjudicated_ranking_is_the_items_consensus() {
        let cfg = ProjectConfig::parse(&json!({"questions": [{"name": "r", "kind": "ranking"}]})).unwrap();
        let item = Item {
            id: "i".into(),
            project_id: "p".into(),
            external_id: "x".into(),
            prompt: "P".into(),
            responses: vec!["a".into(), "b".into(), "c".into()],
            gold: None,
        };
        let subs = vec![
            label("s1", "u1", json!({"r": {"ranking": [0, 1, 2]}})),
            label("s2", "u2", json!({"r": {"ranking": [0, 2, 1]}})),
        ];
        let names = HashMap::from([("rev".to_string(), "rita".to_string())]);
        let votes = compute(&cfg, std::slice::from_ref(&item), &subs, &names, &HashMap::new());
        assert_eq!(votes.consensus[0]["consensus"]["r"]["ranked_pairs"], json!([0, 1, 2]));
        assert_eq!(votes.consensus[0]["source"], "majority");
        let adj = Adjudication {
            id: "a".into(),
            project_id: "p".into(),
            item_id: "i".into(),
            user_id: "rev".into(),
            answer: json!({"r": {"ranking": [2, 1, 0]}}),
            created_at: 0,
        };
        let decided = compute(&cfg, &[item], &subs, &names, &HashMap::from([("i", &adj)]));
        let c = &decided.consensus[0];
        assert_eq!(
            (&c["consensus"]["r"]["ranked_pairs"], &c["source"], &c["adjudicated_by"]),
            (&json!([2, 1, 0]), &json!("adjudicated"), &json!("rita"))
        );
        assert_eq!(decided.agreement["r"], votes.agreement["r"], "agreement counts the ballots");
    }
}
