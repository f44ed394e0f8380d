//! `/p/{id}/items`: admins search and filter a project's items (a plain GET form, so it
//! works without scripts and every filtered view has an address), and `/p/{id}/items/{item}`
//! previews one item read-only with its suggestions, its labels as reviewed, its flags and
//! its adjudicated answer (see `item_review`). Neither claims anything.
use super::{login_redirect, percent_encode, render};
use crate::api::items::{search, ItemQuery};
use crate::app::AppState;
use crate::auth::MaybeUser;
use crate::error::{Error, Result};
use crate::tasks::ProjectConfig;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use std::collections::HashMap;

/// The address of page `page` of this search (the other filters kept).
fn page_url(project: &str, q: &ItemQuery, page: i64) -> String {
    let mut parts = vec![];
    for (k, v) in [
        ("q", &q.q),
        ("status", &q.status),
        ("annotator", &q.annotator),
        ("suggested", &q.suggested),
        ("flagged", &q.flagged),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}={}", percent_encode(v)));
        }
    }
    if q.per_page != crate::api::items::PER_PAGE {
        parts.push(format!("per_page={}", q.per_page));
    }
    parts.push(format!("page={page}"));
    format!("/p/{project}/items?{}", parts.join("&"))
}

pub async fn list(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/items")));
    };
    user.require_admin()?;
    let project = state.db.project(&id).await?;
    let q = ItemQuery::parse(&raw)?;
    let found = search(&state, &id, &q).await?;
    let pages = found["pages"].as_i64().unwrap_or(1);
    let prev = (q.page > 1).then(|| page_url(&id, &q, q.page - 1));
    let next = (q.page < pages).then(|| page_url(&id, &q, q.page + 1));
    let filtered = [&q.q, &q.status, &q.annotator, &q.suggested, &q.flagged].iter().any(|v| !v.is_empty());
    let members = state.db.member_names(&id).await?;
    Ok(render(
        &state,
        "items.html",
        context! {
            user => user.user, csrf => user.csrf, project => project, query => q, found => found,
            members => members, prev => prev, next => next, filtered => filtered,
        },
    )?
    .into_response())
}

pub async fn preview(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response> {
    let Some(user) = user else {
        return Ok(login_redirect(&format!("/p/{id}/items/{item_id}")));
    };
    user.require_admin()?;
    let project = state.db.project(&id).await?;
    let item = state.db.item(&item_id).await?;
    if item.project_id != id {
        return Err(Error::NotFound(format!("no item `{item_id}` in this project")));
    }
    let suggestions = state.db.item_suggestions(&item.id).await?;
    let names = state.db.usernames().await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let subs = state.db.item_submissions(&item.id).await?;
    let review = super::item_review::item_review(&state, &cfg, &item, &subs, &names).await?;
    let mut labels = vec![];
    for (s, review) in subs.into_iter().zip(review.labels) {
        let kept = state.db.suggestions_kept(&s.id).await?;
        labels.push(context! {
            review => review,
            annotator => names.get(&s.user_id).cloned().unwrap_or_else(|| s.user_id.clone()),
            kind => s.kind,
            answer => s.answer.to_string(),
            skip_reason => s.skip_reason,
            kept => kept.map(|k| k.to_string()),
        });
    }
    Ok(render(
        &state,
        "item_preview.html",
        context! {
            user => user.user, csrf => user.csrf, project => project, item => item, labels => labels,
            suggestions => suggestions.as_ref().map(|s| s.answers.to_string()),
            suggestion_source => suggestions.and_then(|s| s.source),
            gold => item.gold.as_ref().map(|g| g.to_string()),
            flags => review.flags, adjudication => review.adjudication,
        },
    )?
    .into_response())
}
