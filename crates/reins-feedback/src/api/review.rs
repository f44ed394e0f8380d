//! The JSON API of edits and reviews (the rules are in `crate::review`): an annotator's
//! recent labels and their edits, flags, the review queue with accept / correct / reject,
//! adjudication of disagreements, and per-project reviewers. The pages call these too.
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::db::{now_ms, random_token, Adjudication, Item, Revision, Submission};
use crate::error::{bad, Error, Result};
use crate::review::{self, Verdict, EDITABLE_RECENT};
use crate::tasks::{ProjectConfig, MAX_TEXT};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Admins review every project; others only where they were made reviewers.
pub async fn require_reviewer(state: &AppState, user: &AuthUser, project_id: &str) -> Result<()> {
    state.db.project(project_id).await?;
    if user.is_admin() || state.db.is_reviewer(project_id, &user.user.id).await? {
        Ok(())
    } else {
        Err(Error::Forbidden("reviewing this project needs the admin role or reviewer membership".into()))
    }
}

fn identity(item: &Item) -> Vec<usize> {
    (0..item.responses.len()).collect()
}

fn reason_text(note: &str, what: &str) -> Result<String> {
    let note = note.trim();
    if note.is_empty() || note.len() > MAX_TEXT {
        return Err(bad(format!("{what} needs a note of 1-{MAX_TEXT} bytes")));
    }
    Ok(note.to_string())
}

/// This user's most recent labels, newest first: answer in the positions they saw,
/// whether they can still change it, the reviewer's verdict, and gold feedback when the
/// project enables it.
pub async fn mine(state: &AppState, project_id: &str, user: &AuthUser) -> Result<Vec<Value>> {
    let db = &state.db;
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let recent = db.recent_labels(project_id, &user.user.id, EDITABLE_RECENT).await?;
    let states = review::states(&recent, &db.revisions(project_id).await?);
    let mut out = Vec::new();
    for s in &recent {
        let Some(st) = states.get(&s.id) else { continue };
        let item = db.item(&s.item_id).await?;
        let shown: Vec<&String> = s.display_order.iter().filter_map(|&i| item.responses.get(i)).collect();
        let answer = review::to_display(&cfg, &st.answer, &s.display_order);
        let gold = if cfg.gold_feedback { review::gold_check(&cfg, &item, s, &st.answer) } else { None };
        // Once the expected answer was shown, changing the label would game gold accuracy.
        let editable = st.verdict == Verdict::Pending && gold.is_none();
        out.push(json!({
            "submission_id": s.id, "assignment_id": s.assignment_id, "item_id": item.external_id,
            "prompt": item.prompt, "responses": shown, "answer": answer,
            "summary": review::describe(&cfg, &answer), "status": st.verdict, "edited": st.edited,
            "editable": editable, "reason": st.reason, "gold": gold,
            "created_at": s.created_at,
        }));
    }
    Ok(out)
}

pub async fn get_mine(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<Value>> {
    user.require_member(&state, &id).await?;
    Ok(Json(json!({"labels": mine(&state, &id, &user).await?, "editable_recent": EDITABLE_RECENT})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviseBody {
    /// The new answer: in the positions the annotator saw (`edit`), in the item's own order
    /// (`correct`, as the review page shows it).
    #[serde(default)]
    pub answers: Option<Value>,
    /// Why (`reject`).
    #[serde(default)]
    pub reason: Option<String>,
    /// A retry with the same key returns the stored change and stores nothing.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Sent by the label form; ignored (the submission names its assignment).
    #[serde(default)]
    pub assignment_id: Option<String>,
    /// Sent by the label form; ignored.
    #[serde(default)]
    pub time_ms: Option<i64>,
}

/// `edit` (the label's author), or `accept` / `correct` / `reject` (a reviewer).
pub async fn revise(
    state: &AppState,
    project_id: &str,
    user: &AuthUser,
    submission_id: &str,
    action: &str,
    body: ReviseBody,
) -> Result<(Revision, bool)> {
    let db = &state.db;
    if !matches!(action, "edit" | "accept" | "correct" | "reject") {
        return Err(Error::NotFound(format!("unknown action `{action}`: use edit, accept, correct or reject")));
    }
    if body.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
        return Err(bad("`idempotency_key` must be 1-200 bytes"));
    }
    // Who may act is checked before the label is looked up, so outsiders learn nothing.
    if action == "edit" {
        user.require_member(state, project_id).await?;
    } else {
        require_reviewer(state, user, project_id).await?;
    }
    let s: Submission = db
        .submission(submission_id)
        .await?
        .filter(|s| s.project_id == project_id)
        .ok_or_else(|| Error::NotFound(format!("no label `{submission_id}` in this project")))?;
    if action == "edit" && s.user_id != user.user.id {
        return Err(Error::Forbidden("you can change only your own labels".into()));
    }
    if action != "edit" && s.user_id == user.user.id {
        return Err(Error::Forbidden("a label is reviewed by someone else: ask another reviewer".into()));
    }
    if let Some(k) = &body.idempotency_key {
        // A retry of a stored change is answered before the checks that it changed.
        if let Some(r) = db.revision_by_key(&user.user.id, k).await? {
            if r.submission_id != s.id || r.action != action {
                return Err(Error::Conflict(
                    "this `idempotency_key` was already used for another change; send a new key".into(),
                ));
            }
            return Ok((r, false));
        }
    }
    let revs = db.revisions(project_id).await?;
    let st = review::states(std::slice::from_ref(&s), &revs)
        .remove(&s.id)
        .ok_or_else(|| Error::Internal("no state for a stored submission".into()))?;
    if st.verdict != Verdict::Pending {
        let what = serde_json::to_value(st.verdict).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        return Err(Error::Conflict(format!("this label was already reviewed ({what}); it can no longer be changed")));
    }
    if s.kind != "label" && action != "accept" {
        return Err(Error::Conflict("a skip has no answer to change: accept it to clear its flag".into()));
    }
    let item = db.item(&s.item_id).await?;
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let (answer, note) = match action {
        "edit" => {
            let recent = db.recent_labels(project_id, &user.user.id, EDITABLE_RECENT).await?;
            if !recent.iter().any(|r| r.id == s.id) {
                return Err(Error::Conflict(format!(
                    "only your {EDITABLE_RECENT} most recent labels can be changed; this one is older"
                )));
            }
            if cfg.gold_feedback && item.gold.is_some() {
                return Err(Error::Conflict(
                    "this was a check item and you were shown its expected answer: it cannot be changed".into(),
                ));
            }
            let a = body.answers.ok_or_else(|| bad("send `answers`, in the positions you saw"))?;
            crate::throttle::count_submission(state, &user.user.id).await?;
            (Some(cfg.canonicalize(&a, &s.display_order, &item.responses)?), None)
        }
        "correct" => {
            let a = body.answers.ok_or_else(|| bad("send `answers`, in the item's own response order"))?;
            (Some(cfg.canonicalize(&a, &identity(&item), &item.responses)?), None)
        }
        "reject" => (None, Some(reason_text(body.reason.as_deref().unwrap_or(""), "a rejection")?)),
        _ => (None, None),
    };
    let r = Revision {
        id: random_token(),
        project_id: project_id.into(),
        submission_id: s.id.clone(),
        user_id: user.user.id.clone(),
        action: action.into(),
        answer,
        note,
        created_at: now_ms(),
    };
    db.insert_revision(&r, body.idempotency_key.as_deref()).await
}

pub async fn post_revision(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path((id, sid, action)): Path<(String, String, String)>,
    Json(b): Json<ReviseBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    let (r, created) = revise(&state, &id, &user, &sid, &action, b).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"revision": r, "duplicate": !created}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagBody {
    pub assignment_id: String,
    pub note: String,
}

/// Flags the task in front of the annotator for review; they still label or skip it.
pub async fn post_flag(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<FlagBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    user.require_member(&state, &id).await?;
    let note = reason_text(&b.note, "a flag")?;
    state
        .db
        .assignment(&b.assignment_id)
        .await?
        .filter(|a| a.user_id == user.user.id && a.project_id == id)
        .ok_or_else(|| Error::NotFound("no such assignment for you in this project".into()))?;
    let f = state.db.insert_flag(&id, &b.assignment_id, &user.user.id, &note).await?;
    Ok((StatusCode::CREATED, Json(json!(f))))
}

/// The review queue: unreviewed labels (and flagged skips), flagged first then oldest;
/// the latest verdicts; and the disagreements to adjudicate. Answers are in item order.
pub async fn queue(state: &AppState, project_id: &str) -> Result<Value> {
    let db = &state.db;
    let cfg = ProjectConfig::parse(&db.project(project_id).await?.config)?;
    let items = db.items(project_id).await?;
    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let subs = db.submissions(project_id).await?;
    let revs = db.revisions(project_id).await?;
    let flags = db.flags(project_id).await?;
    let names = db.usernames().await?;
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let states = review::states(&subs, &revs);
    let mut flagged: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in &flags {
        flagged.entry(f.assignment_id.as_str()).or_default().push(f.note.as_str());
    }
    let view = |s: &Submission, st: &review::LabelState| -> Option<Value> {
        let item = by_id.get(s.item_id.as_str())?;
        let shown = review::to_display(&cfg, &st.answer, &identity(item));
        Some(json!({
            "submission_id": s.id, "item_id": item.external_id, "prompt": item.prompt,
            "responses": item.responses, "annotator": name(&s.user_id), "kind": s.kind,
            "skip_reason": s.skip_reason, "answer": st.answer, "summary": review::describe(&cfg, &shown),
            "flags": flagged.get(s.assignment_id.as_str()).cloned().unwrap_or_default(),
            "edited": st.edited, "verdict": st.verdict, "reason": st.reason,
            "reviewer": st.reviewer.as_deref().map(name),
        }))
    };
    let mut pending: Vec<&Submission> = subs
        .iter()
        .filter(|s| states.get(&s.id).is_some_and(|st| st.verdict == Verdict::Pending))
        .filter(|s| s.kind == "label" || flagged.contains_key(s.assignment_id.as_str()))
        .collect();
    pending.sort_by_key(|s| (!flagged.contains_key(s.assignment_id.as_str()), s.created_at));
    let labels: Vec<Value> = pending.iter().take(100).filter_map(|s| view(s, states.get(&s.id)?)).collect();
    let verdicts: HashMap<&str, i64> =
        revs.iter().filter(|r| r.action != "edit").map(|r| (r.submission_id.as_str(), r.created_at)).collect();
    let mut done: Vec<&Submission> = subs.iter().filter(|s| verdicts.contains_key(s.id.as_str())).collect();
    done.sort_by_key(|s| std::cmp::Reverse(verdicts.get(s.id.as_str()).copied()));
    let reviewed: Vec<Value> = done.iter().take(20).filter_map(|s| view(s, states.get(&s.id)?)).collect();

    let eff = review::effective(subs.clone(), &revs);
    let adj = db.adjudications(project_id).await?;
    let disagreements: Vec<Value> = review::disagreements(&cfg, &items, &eff, &review::latest_adjudications(&adj))
        .iter()
        .map(|d| {
            let order = identity(d.item);
            let mut choices: Vec<Value> = Vec::new();
            let votes: Vec<Value> = d
                .labels
                .iter()
                .map(|s| {
                    let shown = review::to_display(&cfg, &s.answer, &order);
                    let summary = review::describe(&cfg, &shown);
                    if !choices.iter().any(|c| c["summary"] == summary.as_str()) {
                        choices.push(json!({"summary": summary, "answers": shown}));
                    }
                    json!({"annotator": name(&s.user_id), "summary": summary})
                })
                .collect();
            json!({"id": d.item.id, "item_id": d.item.external_id, "prompt": d.item.prompt,
                   "responses": d.item.responses, "questions": d.questions, "votes": votes, "choices": choices})
        })
        .collect();
    Ok(json!({"labels": labels, "reviewed": reviewed, "disagreements": disagreements}))
}

pub async fn get_queue(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<Value>> {
    require_reviewer(&state, &user, &id).await?;
    Ok(Json(queue(&state, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjudicateBody {
    /// The final answer, in the item's own response order.
    pub answers: Value,
}

pub async fn post_adjudication(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path((id, item_id)): Path<(String, String)>,
    Json(b): Json<AdjudicateBody>,
) -> Result<(StatusCode, Json<Value>)> {
    user.check_csrf_header(&headers)?;
    require_reviewer(&state, &user, &id).await?;
    let item = state
        .db
        .item(&item_id)
        .await
        .ok()
        .filter(|i| i.project_id == id)
        .ok_or_else(|| Error::NotFound(format!("no item `{item_id}` in this project")))?;
    let cfg = ProjectConfig::parse(&state.db.project(&id).await?.config)?;
    let a = Adjudication {
        id: random_token(),
        project_id: id.clone(),
        item_id: item.id.clone(),
        user_id: user.user.id.clone(),
        answer: cfg.canonicalize(&b.answers, &identity(&item), &item.responses)?,
        created_at: now_ms(),
    };
    state.db.insert_adjudication(&a).await?;
    Ok((StatusCode::CREATED, Json(json!(a))))
}

/// Makes a user a reviewer of the project (admins only).
pub async fn add_reviewer(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<super::UsernameBody>,
) -> Result<StatusCode> {
    let u = super::project_user_for_admin(&state, &user, &headers, &id, &b.username).await?;
    state.db.add_reviewer(&id, &u.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
