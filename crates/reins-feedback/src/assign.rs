//! Assignment with overlap k: each non-gold item goes to at most `overlap` different
//! people (skips free the slot), fewest-labelled first; gold items (known answers) are
//! mixed in at `gold_rate` and every annotator may get each one. Response positions are
//! shuffled per assignment and recorded. Annotators never see others' answers.
//!
//! Opening a task claims its slot for `claim_timeout_minutes`; an abandoned claim then
//! expires so the item is not stranded, and a late answer to it is still stored (the item
//! may end with more than k labels rather than lose work). Previews claim nothing.
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::db::{now_ms, random_token, Assignment, Item, Submission};
use crate::error::{bad, Error, Result};
use crate::tasks::{ProjectConfig, MAX_TEXT};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

/// The open assignment of this user, or a new one; None when nothing is left.
pub async fn next_assignment(
    state: &AppState,
    project_id: &str,
    user: &AuthUser,
) -> Result<Option<(Assignment, Item)>> {
    let db = &state.db;
    let uid = &user.user.id;
    if let Some(a) = db.open_assignment(project_id, uid).await? {
        let item = db.item(&a.item_id).await?;
        return Ok(Some((a, item)));
    }
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let claimed_since = cfg.claims_since(now_ms());
    // Candidates are the few least-labelled items, tried in random order so concurrent
    // annotators rarely race for the same one. A lost race means someone else got a slot,
    // so re-querying makes progress; an empty candidate list means nothing is left.
    for _ in 0..100 {
        let want_gold = rand::rng().random_bool(cfg.gold_rate);
        let mut candidates = Vec::new();
        if want_gold {
            candidates = db
                .next_item_ids(project_id, uid, cfg.overlap as i64, true, 8, claimed_since)
                .await?
                .into_iter()
                .map(|i| (i, None))
                .collect();
        }
        if candidates.is_empty() {
            candidates = db
                .next_item_ids(project_id, uid, cfg.overlap as i64, false, 8, claimed_since)
                .await?
                .into_iter()
                .map(|i| (i, Some(cfg.overlap as i64)))
                .collect();
        }
        if candidates.is_empty() {
            return Ok(None);
        }
        candidates.shuffle(&mut rand::rng());
        for (item_id, cap) in candidates {
            let item = db.item(&item_id).await?;
            let mut order: Vec<usize> = (0..item.responses.len()).collect();
            order.shuffle(&mut rand::rng());
            if let Some(a) = db.create_assignment(project_id, &item_id, uid, &order, cap, claimed_since).await? {
                return Ok(Some((a, item)));
            }
        }
    }
    Ok(None)
}

/// The item `next_assignment` would most likely hand out next, without claiming it: what
/// an admin who is not a member of the project sees on its label page.
pub async fn preview_item(state: &AppState, project_id: &str, user: &AuthUser) -> Result<Option<Item>> {
    let db = &state.db;
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let since = cfg.claims_since(now_ms());
    for gold in [false, true] {
        let ids = db.next_item_ids(project_id, &user.user.id, cfg.overlap as i64, gold, 1, since).await?;
        if let Some(id) = ids.first() {
            return Ok(Some(db.item(id).await?));
        }
    }
    Ok(None)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    pub assignment_id: String,
    /// Any client-chosen string up to 200 bytes; a retry with the same key is answered
    /// with the stored submission and stores nothing new.
    pub idempotency_key: String,
    /// Answers keyed by question name, in display positions. Absent when skipping.
    #[serde(default)]
    pub answers: Option<Value>,
    /// A reason to skip instead of answering.
    #[serde(default)]
    pub skip: Option<String>,
    /// Milliseconds the annotator spent on the task.
    #[serde(default)]
    pub time_ms: Option<i64>,
}

pub async fn submit(
    state: &AppState,
    project_id: &str,
    user: &AuthUser,
    body: SubmitBody,
) -> Result<(Submission, bool)> {
    if body.idempotency_key.is_empty() || body.idempotency_key.len() > 200 {
        return Err(bad("`idempotency_key` must be 1–200 bytes"));
    }
    let db = &state.db;
    // A retry of a stored submission is answered before any other check (and is free).
    if let Some(existing) = db.submission_by_key(&user.user.id, &body.idempotency_key).await? {
        return retry_of(existing, &body.assignment_id);
    }
    let a = db
        .assignment(&body.assignment_id)
        .await?
        .filter(|a| a.user_id == user.user.id && a.project_id == project_id)
        .ok_or_else(|| Error::NotFound("no such assignment for you in this project".into()))?;
    if a.status != "open" {
        return Err(Error::Conflict(format!("this assignment is already {}", a.status)));
    }
    crate::throttle::count_submission(state, &user.user.id).await?;
    let item = db.item(&a.item_id).await?;
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let (kind, answer, skip_reason) = match (body.answers, body.skip) {
        (Some(_), Some(_)) => return Err(bad("send either `answers` or `skip`, not both")),
        (None, Some(reason)) => {
            if reason.trim().is_empty() || reason.len() > MAX_TEXT {
                return Err(bad(format!("a skip needs a reason of 1–{MAX_TEXT} bytes")));
            }
            ("skip", Value::Object(Default::default()), Some(reason))
        }
        (Some(ans), None) => ("label", cfg.canonicalize(&ans, &a.display_order, &item.responses)?, None),
        (None, None) => return Err(bad("send `answers` (or `skip` with a reason)")),
    };
    let s = Submission {
        id: random_token(),
        idempotency_key: body.idempotency_key,
        project_id: project_id.into(),
        item_id: item.id.clone(),
        user_id: user.user.id.clone(),
        assignment_id: a.id.clone(),
        kind: kind.into(),
        answer,
        display_order: a.display_order.clone(),
        skip_reason,
        time_ms: body.time_ms.unwrap_or(0).clamp(0, 24 * 3600 * 1000),
        created_at: now_ms(),
    };
    // Which suggested answers the person kept unchanged, stored with the submission.
    let kept = match db.item_suggestions(&item.id).await? {
        Some(sg) if s.kind == "label" => Some(crate::suggestions::kept(&cfg, &sg.answers, &s.answer)),
        _ => None,
    };
    let (stored, created) = db.insert_submission_noting(&s, kept.as_ref()).await?;
    if created {
        Ok((stored, true))
    } else {
        // A concurrent request stored this key first.
        retry_of(stored, &a.id)
    }
}

/// A key seen before is a retry only for the same assignment; for another one it would
/// answer "stored" while storing nothing, so it is refused.
fn retry_of(existing: Submission, assignment_id: &str) -> Result<(Submission, bool)> {
    if existing.assignment_id == assignment_id {
        Ok((existing, false))
    } else {
        Err(Error::Conflict(format!(
            "this `idempotency_key` was already used for another assignment ({}); \
             send a new key with each submission and reuse it only to retry that one",
            existing.assignment_id
        )))
    }
}
