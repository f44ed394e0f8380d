//! Pages of edits and reviews: an annotator's recent labels (`/p/{id}/mine`) and the form to
//! change one, the review queue (`/p/{id}/review`) and the form to correct a label. The
//! forms are the label page pre-filled (`review.js`), saving through `api::review`.
use super::{fields, login_redirect, markdown, render};
use crate::api::review as api;
use crate::app::AppState;
use crate::auth::MaybeUser;
use crate::db::Item;
use crate::error::{Error, Result};
use crate::review;
use crate::tasks::ProjectConfig;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde_json::{json, Value};

fn short(text: &str) -> String {
    let s: String = text.chars().take(120).collect();
    if s.len() < text.len() {
        format!("{s}...")
    } else {
        s
    }
}

pub async fn mine_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/mine")));
    };
    user.require_member(&state, &id).await?;
    let project = state.db.project(&id).await?;
    let mut entries = api::mine(&state, &id, &user).await?;
    for e in &mut entries {
        e["prompt_short"] = json!(short(e["prompt"].as_str().unwrap_or_default()));
    }
    let html = render(
        &state,
        "review.html",
        context! { user => user.user, csrf => user.csrf, project => project, mode => "mine",
        entries => entries, limit => review::EDITABLE_RECENT },
    )?;
    Ok(html.into_response())
}

/// The label page for `item` shown in `order`, pre-filled with `answers` (display form),
/// saving to `submit_url` and going to `after` once saved.
#[allow(clippy::too_many_arguments)]
fn form(
    state: &AppState,
    user: &crate::auth::AuthUser,
    project: &crate::db::Project,
    cfg: &ProjectConfig,
    item: &Item,
    assignment_id: &str,
    order: &[usize],
    answers: Value,
    edit: Value,
) -> Result<Response> {
    let shown: Vec<(String, &String)> =
        order.iter().enumerate().filter_map(|(p, &i)| Some((fields::letter(p), item.responses.get(i)?))).collect();
    let texts: Vec<&String> = shown.iter().map(|s| s.1).collect();
    let task =
        json!({"assignment_id": assignment_id, "item_id": item.external_id, "prompt": item.prompt, "responses": texts});
    let mut edit = edit;
    edit["prefill"] = answers;
    let html = render(
        state,
        "label.html",
        context! {
            user => user.user, csrf => user.csrf, project => project, task => task,
            responses => shown, fields => fields::fields(cfg, order.len()), preview => false,
            progress => minijinja::Value::UNDEFINED, edit => edit,
            guidelines => minijinja::Value::from_safe_string(markdown(&cfg.guidelines)),
        },
    )?;
    Ok(html.into_response())
}

/// The annotator's label form, pre-filled with their current answer, in the order they saw.
pub async fn edit_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/mine/{sid}")));
    };
    user.require_member(&state, &id).await?;
    let entries = api::mine(&state, &id, &user).await?;
    let Some(e) = entries.iter().find(|e| e["submission_id"] == sid.as_str()) else {
        return Err(Error::NotFound(format!(
            "no label `{sid}` among your {} most recent in this project",
            review::EDITABLE_RECENT
        )));
    };
    if e["editable"] != true {
        return Err(Error::Conflict("this label was already reviewed; it can no longer be changed".into()));
    }
    let s = state.db.submission(&sid).await?.ok_or_else(|| Error::NotFound(format!("no label `{sid}`")))?;
    let project = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let item = state.db.item(&s.item_id).await?;
    let edit = json!({"submit_url": format!("/api/projects/{id}/submissions/{sid}/edit"), "after": format!("/p/{id}/mine"),
                      "title": format!("Changing your label of item {}: your answer is filled in; change it and save.", item.external_id)});
    form(&state, &user, &project, &cfg, &item, &s.assignment_id, &s.display_order, e["answer"].clone(), edit)
}

pub async fn queue_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/review")));
    };
    api::require_reviewer(&state, &user, &id).await?;
    let project = state.db.project(&id).await?;
    let q = api::queue(&state, &id).await?;
    let html = render(
        &state,
        "review.html",
        context! { user => user.user, csrf => user.csrf, project => project, mode => "queue",
        labels => q["labels"], reviewed => q["reviewed"], disagreements => q["disagreements"] },
    )?;
    Ok(html.into_response())
}

/// The reviewer's form to correct a label: responses in the item's own order, pre-filled
/// with the label's current answer.
pub async fn correct_page(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/review/{sid}")));
    };
    api::require_reviewer(&state, &user, &id).await?;
    let s = state
        .db
        .submission(&sid)
        .await?
        .filter(|s| s.project_id == id && s.kind == "label")
        .ok_or_else(|| Error::NotFound(format!("no label `{sid}` in this project")))?;
    let st = review::states(std::slice::from_ref(&s), &state.db.revisions(&id).await?)
        .remove(&s.id)
        .ok_or_else(|| Error::Internal("no state for a stored submission".into()))?;
    if st.verdict != review::Verdict::Pending {
        return Err(Error::Conflict("this label was already reviewed".into()));
    }
    let project = state.db.project(&id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let item = state.db.item(&s.item_id).await?;
    let order: Vec<usize> = (0..item.responses.len()).collect();
    let who = state.db.usernames().await?.get(&s.user_id).cloned().unwrap_or_default();
    let edit = json!({"submit_url": format!("/api/projects/{id}/submissions/{sid}/correct"), "after": format!("/p/{id}/review"),
                      "title": format!("Correcting {who}'s label of item {}: their answer is filled in; your saved answer replaces it (theirs is kept).", item.external_id)});
    let answers = review::to_display(&cfg, &st.answer, &order);
    form(&state, &user, &project, &cfg, &item, &s.assignment_id, &order, answers, edit)
}

pub async fn review_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../templates/review.js"))
        .into_response()
}
