//! Rows of edits, reviews, flags, adjudications and reviewers (migration 5). Submissions
//! stay append-only: everything here is a new row beside them.
use super::records::{json_col, submission_from, SUBMISSION_COLS};
use super::{now_ms, opt_str, random_token, Db, Submission};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

/// An annotator's `edit` of their own label or a reviewer's `accept`, `correct` or `reject`.
#[derive(Clone, Debug, Serialize)]
pub struct Revision {
    pub id: String,
    pub project_id: String,
    pub submission_id: String,
    pub user_id: String,
    pub action: String,
    /// The new answer in item order (`edit`, `correct`).
    pub answer: Option<Value>,
    /// The reason (`reject`).
    pub note: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Flag {
    pub id: String,
    pub project_id: String,
    pub assignment_id: String,
    pub user_id: String,
    pub note: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Adjudication {
    pub id: String,
    pub project_id: String,
    pub item_id: String,
    pub user_id: String,
    /// The final answer in item order.
    pub answer: Value,
    pub created_at: i64,
}

fn revision_from(row: &AnyRow) -> Result<Revision> {
    let answer = opt_str(row, "answer")?
        .map(|a| serde_json::from_str(&a))
        .transpose()
        .map_err(|e| Error::Internal(format!("corrupt revision answer: {e}")))?;
    Ok(Revision {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        submission_id: row.try_get("submission_id")?,
        user_id: row.try_get("user_id")?,
        action: row.try_get("action")?,
        answer,
        note: opt_str(row, "note")?,
        created_at: row.try_get("created_at")?,
    })
}

const FLAG_COLS: &str = "f.id, f.project_id, f.assignment_id, f.user_id, f.note, f.created_at";

fn flag_from(row: &AnyRow) -> Result<Flag> {
    Ok(Flag {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        assignment_id: row.try_get("assignment_id")?,
        user_id: row.try_get("user_id")?,
        note: row.try_get("note")?,
        created_at: row.try_get("created_at")?,
    })
}

const REVISION_COLS: &str = "id, project_id, submission_id, user_id, action, answer, note, created_at";

impl Db {
    /// Stores a revision once per `(user, idempotency_key)`; a retry returns the stored one
    /// with `false`. Its time is after every earlier revision of the submission, so "the
    /// latest" is well defined even within one millisecond. A `reject` also frees the
    /// assignment's slot (status `rejected`), so the item returns to the queue. A label takes
    /// one verdict (a unique index): a second, from a reviewer who raced the first, is refused.
    pub async fn insert_revision(&self, r: &Revision, key: Option<&str>) -> Result<(Revision, bool)> {
        if let Some(k) = key {
            if let Some(existing) = self.revision_by_key(&r.user_id, k).await? {
                return Ok((existing, false));
            }
        }
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO revisions (id, project_id, submission_id, user_id, action, answer, note, idempotency_key, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, \
             (SELECT CASE WHEN MAX(o.created_at) >= $9 THEN MAX(o.created_at) + 1 ELSE $9 END FROM revisions o WHERE o.submission_id = $3) \
             WHERE 1 = 1 ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.project_id)
        .bind(&r.submission_id)
        .bind(&r.user_id)
        .bind(&r.action)
        .bind(r.answer.as_ref().map(Value::to_string))
        .bind(r.note.clone())
        .bind(key.map(str::to_string))
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 0 {
            tx.rollback().await?;
            let existing = match key {
                Some(k) => self.revision_by_key(&r.user_id, k).await?,
                None => None,
            };
            return existing.map(|e| (e, false)).ok_or_else(|| {
                Error::Conflict("this label was reviewed meanwhile (one verdict per label): reload to see it".into())
            });
        }
        if r.action == "reject" {
            sqlx::query(
                "UPDATE assignments SET status = 'rejected' WHERE id = (SELECT assignment_id FROM submissions WHERE id = $1)",
            )
            .bind(&r.submission_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((r.clone(), true))
    }

    pub async fn revision_by_key(&self, user_id: &str, key: &str) -> Result<Option<Revision>> {
        let row =
            sqlx::query(&format!("SELECT {REVISION_COLS} FROM revisions WHERE user_id = $1 AND idempotency_key = $2"))
                .bind(user_id)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(revision_from).transpose()
    }

    /// Every revision of the project, oldest first.
    pub async fn revisions(&self, project_id: &str) -> Result<Vec<Revision>> {
        let rows = sqlx::query(&format!(
            "SELECT {REVISION_COLS} FROM revisions WHERE project_id = $1 ORDER BY created_at, id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(revision_from).collect()
    }

    pub async fn submission(&self, id: &str) -> Result<Option<Submission>> {
        let row = sqlx::query(&format!("SELECT {SUBMISSION_COLS} FROM submissions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(submission_from).transpose()
    }

    /// This user's `limit` most recent labels (skips excluded) in the project, newest first.
    pub async fn recent_labels(&self, project_id: &str, user_id: &str, limit: i64) -> Result<Vec<Submission>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBMISSION_COLS} FROM submissions WHERE project_id = $1 AND user_id = $2 AND kind = 'label' \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(project_id)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(submission_from).collect()
    }

    pub async fn insert_flag(&self, project_id: &str, assignment_id: &str, user_id: &str, note: &str) -> Result<Flag> {
        let f = Flag {
            id: random_token(),
            project_id: project_id.into(),
            assignment_id: assignment_id.into(),
            user_id: user_id.into(),
            note: note.into(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO flags (id, project_id, assignment_id, user_id, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&f.id)
        .bind(&f.project_id)
        .bind(&f.assignment_id)
        .bind(&f.user_id)
        .bind(&f.note)
        .bind(f.created_at)
        .execute(&self.pool)
        .await?;
        Ok(f)
    }

    pub async fn flags(&self, project_id: &str) -> Result<Vec<Flag>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLAG_COLS} FROM flags f WHERE f.project_id = $1 ORDER BY f.created_at, f.id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_from).collect()
    }

    /// The flags raised on one item (the item preview), oldest first.
    pub async fn item_flags(&self, item_id: &str) -> Result<Vec<Flag>> {
        let rows = sqlx::query(&format!(
            "SELECT {FLAG_COLS} FROM flags f JOIN assignments a ON a.id = f.assignment_id \
             WHERE a.item_id = $1 ORDER BY f.created_at, f.id"
        ))
        .bind(item_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_from).collect()
    }

    pub async fn insert_adjudication(&self, a: &Adjudication) -> Result<()> {
        sqlx::query(
            "INSERT INTO adjudications (id, project_id, item_id, user_id, answer, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&a.id)
        .bind(&a.project_id)
        .bind(&a.item_id)
        .bind(&a.user_id)
        .bind(a.answer.to_string())
        .bind(a.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every adjudication of the project, oldest first (the latest per item counts).
    pub async fn adjudications(&self, project_id: &str) -> Result<Vec<Adjudication>> {
        let rows = sqlx::query(
            "SELECT id, project_id, item_id, user_id, answer, created_at FROM adjudications WHERE project_id = $1 ORDER BY created_at, id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Adjudication {
                    id: row.try_get("id")?,
                    project_id: row.try_get("project_id")?,
                    item_id: row.try_get("item_id")?,
                    user_id: row.try_get("user_id")?,
                    answer: json_col(row, "answer")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn add_reviewer(&self, project_id: &str, user_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO reviewers (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(project_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The projects this user reviews (as a named reviewer), oldest first.
    pub async fn projects_reviewed_by(&self, user_id: &str) -> Result<Vec<super::Project>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.config FROM projects p JOIN reviewers r ON r.project_id = p.id \
             WHERE r.user_id = $1 ORDER BY p.created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(super::Project {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    config: json_col(row, "config")?,
                })
            })
            .collect()
    }

    pub async fn is_reviewer(&self, project_id: &str, user_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM reviewers WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n > 0)
    }
}
