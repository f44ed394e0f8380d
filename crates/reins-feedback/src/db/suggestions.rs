//! Model suggestions stored beside their items, and what annotators did with them.
use super::{Db, Submission};
use crate::error::{Error, Result};
use serde_json::Value;
use sqlx::Row;
use std::collections::BTreeMap;

/// An item's suggested answers (stored form, item order) and who suggested them.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestions {
    pub answers: Value,
    pub source: Option<String>,
}

impl Db {
    /// Stores the suggestions of the item `external_id` (just imported) in `project_id`.
    pub async fn set_item_suggestions(&self, project_id: &str, external_id: &str, s: &Suggestions) -> Result<()> {
        sqlx::query(
            "INSERT INTO item_suggestions (item_id, project_id, answers, source) \
             SELECT id, project_id, $1, $2 FROM items WHERE project_id = $3 AND external_id = $4 \
             ON CONFLICT DO NOTHING",
        )
        .bind(s.answers.to_string())
        .bind(s.source.clone())
        .bind(project_id)
        .bind(external_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn item_suggestions(&self, item_id: &str) -> Result<Option<Suggestions>> {
        let row = sqlx::query("SELECT answers, source FROM item_suggestions WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let answers: String = row.try_get("answers")?;
        let answers =
            serde_json::from_str(&answers).map_err(|e| Error::Internal(format!("corrupt suggestions: {e}")))?;
        Ok(Some(Suggestions { answers, source: super::opt_str(&row, "source")? }))
    }

    /// Per question: (suggested answers kept unchanged, suggested answers changed), over
    /// every submission on an item with suggestions.
    pub async fn suggestion_acceptance(&self, project_id: &str) -> Result<BTreeMap<String, (i64, i64)>> {
        let rows = sqlx::query("SELECT kept FROM suggestion_outcomes WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in rows {
            let kept: String = row.try_get("kept")?;
            let kept: Value =
                serde_json::from_str(&kept).map_err(|e| Error::Internal(format!("corrupt suggestion outcome: {e}")))?;
            for (q, k) in kept.as_object().into_iter().flatten() {
                let e = out.entry(q.clone()).or_default();
                if k.as_bool() == Some(true) {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            }
        }
        Ok(out)
    }

    /// `kept` of one submission: `{question: true when the suggestion was kept unchanged}`.
    pub async fn suggestions_kept(&self, submission_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT kept FROM suggestion_outcomes WHERE submission_id = $1")
            .bind(submission_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let kept: String = r.try_get("kept")?;
            serde_json::from_str(&kept).map_err(|e| Error::Internal(format!("corrupt suggestion outcome: {e}")))
        })
        .transpose()
    }
}

/// Inside the submission's transaction, so a stored label never lacks its outcome.
pub(super) async fn record_kept(tx: &mut sqlx::Transaction<'_, sqlx::Any>, s: &Submission, kept: &Value) -> Result<()> {
    sqlx::query("INSERT INTO suggestion_outcomes (submission_id, project_id, item_id, kept) VALUES ($1, $2, $3, $4)")
        .bind(&s.id)
        .bind(&s.project_id)
        .bind(&s.item_id)
        .bind(kept.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
