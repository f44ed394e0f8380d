//! `GET /api/projects/{id}/items`: item search and filters for admins (also behind the
//! `/p/{id}/items` page). Read-only: listing or previewing an item never claims it.
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::db::{now_ms, ItemFilter, ItemRow, ItemStatus};
use crate::error::{bad, Error, Result};
use crate::tasks::ProjectConfig;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Page size when none is asked for, and the largest one served.
pub const PER_PAGE: i64 = 50;
pub const MAX_PER_PAGE: i64 = 200;
/// Longest search text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 500;
/// Characters of the prompt shown in a row.
const PROMPT_CHARS: usize = 200;

const KEYS: &str = "q, status, annotator, suggested, flagged, page, per_page";

/// The query string, as the page's filter form sends it (empty fields mean "any").
#[derive(Clone, Debug, Default, Serialize)]
pub struct ItemQuery {
    pub q: String,
    pub status: String,
    pub annotator: String,
    pub suggested: String,
    pub flagged: String,
    pub page: i64,
    pub per_page: i64,
}

impl ItemQuery {
    pub fn parse(raw: &HashMap<String, String>) -> Result<ItemQuery> {
        let mut q = ItemQuery { page: 1, per_page: PER_PAGE, ..Default::default() };
        for (k, v) in raw {
            let v = v.trim();
            match k.as_str() {
                "q" if v.len() > MAX_QUERY_BYTES => {
                    return Err(bad(format!("the search text is {} bytes; at most {MAX_QUERY_BYTES}", v.len())))
                }
                "q" => q.q = v.into(),
                "status" if v.is_empty() || ItemStatus::parse(v).is_some() => q.status = v.into(),
                "status" => return Err(bad(format!("unknown status `{v}`: use one of {}", ItemStatus::NAMES))),
                "annotator" => q.annotator = v.into(),
                "suggested" if matches!(v, "" | "true" | "false") => q.suggested = v.into(),
                "suggested" => return Err(bad(format!("`suggested` is true or false, not `{v}`"))),
                "flagged" if matches!(v, "" | "true" | "false") => q.flagged = v.into(),
                "flagged" => return Err(bad(format!("`flagged` is true or false, not `{v}`"))),
                "page" => q.page = v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| bad("`page` counts from 1"))?,
                "per_page" => {
                    q.per_page = v
                        .parse()
                        .ok()
                        .filter(|p| (1..=MAX_PER_PAGE).contains(p))
                        .ok_or_else(|| bad(format!("`per_page` must be 1 to {MAX_PER_PAGE}")))?
                }
                other => return Err(bad(format!("unknown query parameter `{other}`; known: {KEYS}"))),
            }
        }
        Ok(q)
    }
}

/// One page of a project's items (in import order) and the suggestion acceptance so far.
pub async fn search(state: &AppState, project_id: &str, q: &ItemQuery) -> Result<Value> {
    let project = state.db.project(project_id).await?;
    let cfg = ProjectConfig::parse(&project.config)?;
    let annotator_id = match q.annotator.as_str() {
        "" => None,
        name => Some(
            state
                .db
                .user_by_name(name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no user `{name}`: check the annotator's name")))?
                .id,
        ),
    };
    let overlap = i64::from(cfg.overlap);
    let filter = ItemFilter {
        text: Some(q.q.clone()).filter(|t| !t.is_empty()),
        status: ItemStatus::parse(&q.status),
        annotator_id,
        suggested: yes_no(&q.suggested),
        flagged: yes_no(&q.flagged),
        overlap,
        claimed_since: cfg.claims_since(now_ms()),
    };
    let offset = (q.page - 1).saturating_mul(q.per_page);
    let (rows, total) = state.db.search_items(project_id, &filter, q.per_page, offset).await?;
    let items: Vec<Value> = rows.iter().map(|r| row_json(project_id, r, overlap)).collect();
    let acceptance: serde_json::Map<String, Value> = state
        .db
        .suggestion_acceptance(project_id)
        .await?
        .into_iter()
        .map(|(name, (kept, changed))| (name, json!({"kept": kept, "changed": changed})))
        .collect();
    Ok(json!({
        "items": items,
        "total": total,
        "page": q.page,
        "per_page": q.per_page,
        "pages": ((total + q.per_page - 1) / q.per_page).max(1),
        "suggestion_acceptance": acceptance,
    }))
}

/// A parsed `true`/`false` filter; empty means any.
fn yes_no(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn row_json(project_id: &str, r: &ItemRow, overlap: i64) -> Value {
    let mut prompt: String = r.item.prompt.chars().take(PROMPT_CHARS).collect();
    if r.item.prompt.chars().count() > PROMPT_CHARS {
        prompt.push('…');
    }
    json!({
        "id": r.item.id,
        "external_id": r.item.external_id,
        "prompt": prompt,
        "responses": r.item.responses.len(),
        "status": r.status(overlap),
        "labels": r.labels,
        "skips": r.skips,
        "claimed": r.live_claims > 0,
        "annotators": r.annotators,
        "gold": r.item.gold.is_some(),
        "suggested": r.suggested,
        "suggestion_source": r.suggestion_source,
        "flags": r.flags,
        "preview": format!("/p/{project_id}/items/{}", r.item.id),
    })
}

pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    user.require_admin()?;
    let q = ItemQuery::parse(&raw)?;
    Ok(Json(search(&state, &id, &q).await?))
}
