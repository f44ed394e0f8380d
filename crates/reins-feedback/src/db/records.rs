//! Rows and the queries that read and write them.
use super::{now_ms, opt_str, random_token, Db};
use crate::error::{Error, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Annotator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Annotator => "annotator",
        }
    }
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "admin" => Ok(Role::Admin),
            "annotator" => Ok(Role::Annotator),
            other => Err(Error::BadRequest(format!("unknown role `{other}`: use `admin` or `annotator`"))),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub id: String,
    pub project_id: String,
    pub external_id: String,
    pub prompt: String,
    pub responses: Vec<String>,
    pub gold: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Assignment {
    pub id: String,
    pub project_id: String,
    pub item_id: String,
    pub user_id: String,
    /// `display_order[p]` = index of the response shown at position `p`.
    pub display_order: Vec<usize>,
    pub status: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Submission {
    pub id: String,
    pub idempotency_key: String,
    pub project_id: String,
    pub item_id: String,
    pub user_id: String,
    pub assignment_id: String,
    /// `label` or `skip`.
    pub kind: String,
    /// Answers keyed by question name, response indices in the item's own order.
    pub answer: serde_json::Value,
    pub display_order: Vec<usize>,
    pub skip_reason: Option<String>,
    pub time_ms: i64,
    pub created_at: i64,
}

pub(super) fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| Error::Internal(format!("corrupt column {col}: {e}")))
}

pub(super) fn item_from(row: &AnyRow) -> Result<Item> {
    let gold = opt_str(row, "gold")?
        .map(|g| serde_json::from_str(&g))
        .transpose()
        .map_err(|e| Error::Internal(format!("corrupt gold: {e}")))?;
    Ok(Item {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        external_id: row.try_get("external_id")?,
        prompt: row.try_get("prompt")?,
        responses: json_col(row, "responses")?,
        gold,
    })
}

fn assignment_from(row: &AnyRow) -> Result<Assignment> {
    Ok(Assignment {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        item_id: row.try_get("item_id")?,
        user_id: row.try_get("user_id")?,
        display_order: json_col(row, "display_order")?,
        status: row.try_get("status")?,
    })
}

pub(super) fn submission_from(row: &AnyRow) -> Result<Submission> {
    Ok(Submission {
        id: row.try_get("id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        project_id: row.try_get("project_id")?,
        item_id: row.try_get("item_id")?,
        user_id: row.try_get("user_id")?,
        assignment_id: row.try_get("assignment_id")?,
        kind: row.try_get("kind")?,
        answer: json_col(row, "answer")?,
        display_order: json_col(row, "display_order")?,
        skip_reason: opt_str(row, "skip_reason")?,
        time_ms: row.try_get("time_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

/// SQL: assignment `alias` holds a slot of its item (a label, or a claim newer than `$n`).
fn holds_slot(alias: &str, n: usize) -> String {
    format!("({alias}.status = 'done' OR ({alias}.status = 'open' AND {alias}.created_at > ${n}))")
}

const ASSIGNMENT_COLS: &str = "id, project_id, item_id, user_id, display_order, status";
pub(super) const SUBMISSION_COLS: &str = "id, idempotency_key, project_id, item_id, user_id, assignment_id, kind, answer, display_order, skip_reason, time_ms, created_at";

impl Db {
    // ---- projects and members
    /// Refuses a name already in use (the unique `name_key` catches concurrent creates).
    pub async fn create_project(&self, name: &str, config: &serde_json::Value) -> Result<Project> {
        let taken = || Error::Conflict(format!("a project named `{name}` already exists: choose another name"));
        if !self.projects_named(name).await?.is_empty() {
            return Err(taken());
        }
        let id = random_token();
        let res =
            sqlx::query("INSERT INTO projects (id, name, name_key, config, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&id)
                .bind(name)
                .bind(name)
                .bind(config.to_string())
                .bind(now_ms())
                .execute(&self.pool)
                .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(taken()),
            other => Ok(other.map(|_| Project { id, name: name.into(), config: config.clone() })?),
        }
    }

    /// Every project with this exact name, oldest first: one, or several in a database made
    /// before names were unique.
    pub async fn projects_named(&self, name: &str) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT id, name, config FROM projects WHERE name = $1 ORDER BY created_at, id")
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Project { id: row.try_get("id")?, name: row.try_get("name")?, config: json_col(row, "config")? })
            })
            .collect()
    }

    pub async fn project(&self, id: &str) -> Result<Project> {
        let row = sqlx::query("SELECT id, name, config FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no project `{id}`")))?;
        Ok(Project { id: row.try_get("id")?, name: row.try_get("name")?, config: json_col(&row, "config")? })
    }

    /// All projects for admins; the member projects for everyone else.
    pub async fn projects_for(&self, user: &User) -> Result<Vec<Project>> {
        let rows = if user.role == Role::Admin {
            sqlx::query("SELECT id, name, config FROM projects ORDER BY created_at").fetch_all(&self.pool).await?
        } else {
            sqlx::query("SELECT p.id, p.name, p.config FROM projects p JOIN members m ON m.project_id = p.id WHERE m.user_id = $1 ORDER BY p.created_at")
                .bind(&user.id)
                .fetch_all(&self.pool)
                .await?
        };
        rows.iter()
            .map(|row| {
                Ok(Project { id: row.try_get("id")?, name: row.try_get("name")?, config: json_col(row, "config")? })
            })
            .collect()
    }

    pub async fn add_member(&self, project_id: &str, user_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(project_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn is_member(&self, project_id: &str, user_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n > 0)
    }

    // ---- items
    /// Inserts an item; returns false when the external id already exists in the project.
    pub async fn insert_item(
        &self,
        project_id: &str,
        external_id: &str,
        prompt: &str,
        responses: &[String],
        gold: Option<&serde_json::Value>,
    ) -> Result<bool> {
        let seq: i64 = sqlx::query("SELECT COUNT(*) AS n FROM items WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let res = sqlx::query("INSERT INTO items (id, project_id, external_id, prompt, responses, gold, seq, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
            .bind(random_token())
            .bind(project_id)
            .bind(external_id)
            .bind(prompt)
            .bind(serde_json::to_string(responses)?)
            .bind(gold.map(|g| g.to_string()))
            .bind(seq)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    pub async fn item(&self, id: &str) -> Result<Item> {
        let row = sqlx::query("SELECT id, project_id, external_id, prompt, responses, gold FROM items WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no item `{id}`")))?;
        item_from(&row)
    }

    pub async fn items(&self, project_id: &str) -> Result<Vec<Item>> {
        let rows = sqlx::query(
            "SELECT id, project_id, external_id, prompt, responses, gold FROM items WHERE project_id = $1 ORDER BY seq",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(item_from).collect()
    }

    // ---- assignments
    pub async fn open_assignment(&self, project_id: &str, user_id: &str) -> Result<Option<Assignment>> {
        let row = sqlx::query(&format!("SELECT {ASSIGNMENT_COLS} FROM assignments WHERE project_id = $1 AND user_id = $2 AND status = 'open' ORDER BY created_at LIMIT 1"))
            .bind(project_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(assignment_from).transpose()
    }

    pub async fn assignment(&self, id: &str) -> Result<Option<Assignment>> {
        let row = sqlx::query(&format!("SELECT {ASSIGNMENT_COLS} FROM assignments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(assignment_from).transpose()
    }

    /// Up to `limit` items this user has not seen whose overlap is below `overlap` (gold
    /// items when `gold` is true), fewest labels first, then import order. A slot is held by
    /// a submitted label or by an open claim made after `claimed_since` (unix ms); older
    /// claims have expired and skips free their slot.
    pub async fn next_item_ids(
        &self,
        project_id: &str,
        user_id: &str,
        overlap: i64,
        gold: bool,
        limit: i64,
        claimed_since: i64,
    ) -> Result<Vec<String>> {
        let gold_cond = if gold { "i.gold IS NOT NULL" } else { "i.gold IS NULL" };
        let sql = format!(
            "SELECT i.id, (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND {}) AS n \
             FROM items i WHERE i.project_id = $2 AND {gold_cond} \
             AND NOT EXISTS (SELECT 1 FROM assignments b WHERE b.item_id = i.id AND b.user_id = $3) \
             AND (SELECT COUNT(*) FROM assignments c WHERE c.item_id = i.id AND {}) < $5 \
             ORDER BY n, i.seq LIMIT $6",
            holds_slot("a", 1),
            holds_slot("c", 4),
        );
        let rows = sqlx::query(&sql)
            .bind(claimed_since)
            .bind(project_id)
            .bind(user_id)
            .bind(claimed_since)
            .bind(if gold { i64::MAX } else { overlap })
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<_, _>>()?)
    }

    /// Creates an assignment if fewer than `overlap` assignments hold a slot of the item (no
    /// cap when None; see `next_item_ids` for what holds one), atomically: SQLite runs one
    /// writer at a time, and PostgreSQL locks the item row for the check-and-insert.
    pub async fn create_assignment(
        &self,
        project_id: &str,
        item_id: &str,
        user_id: &str,
        display_order: &[usize],
        overlap: Option<i64>,
        claimed_since: i64,
    ) -> Result<Option<Assignment>> {
        let id = random_token();
        let mut tx = self.pool.begin().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("SELECT id FROM items WHERE id = $1 FOR UPDATE").bind(item_id).fetch_optional(&mut *tx).await?;
        }
        let sql = format!(
            "INSERT INTO assignments (id, project_id, item_id, user_id, display_order, status, created_at) \
             SELECT $1, $2, $3, $4, $5, 'open', $6 \
             WHERE (SELECT COUNT(*) FROM assignments a WHERE a.item_id = $7 AND {}) < $9 \
             ON CONFLICT DO NOTHING",
            holds_slot("a", 8)
        );
        let res = sqlx::query(&sql)
            .bind(&id)
            .bind(project_id)
            .bind(item_id)
            .bind(user_id)
            .bind(serde_json::to_string(display_order)?)
            .bind(now_ms())
            .bind(item_id)
            .bind(claimed_since)
            .bind(overlap.unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        self.assignment(&id).await
    }

    // ---- submissions (append-only)
    /// Stores a submission exactly once per `(user, idempotency_key)` and per assignment.
    /// Returns `(submission, created)`; a retry with the same key returns the stored one.
    pub async fn insert_submission(&self, s: &Submission) -> Result<(Submission, bool)> {
        self.insert_submission_noting(s, None).await
    }

    /// Like [`Db::insert_submission`], and in the same transaction records `kept` (which
    /// suggested answers the person left unchanged, see `suggestions`) for a new submission.
    pub async fn insert_submission_noting(
        &self,
        s: &Submission,
        kept: Option<&serde_json::Value>,
    ) -> Result<(Submission, bool)> {
        if let Some(existing) = self.submission_by_key(&s.user_id, &s.idempotency_key).await? {
            return Ok((existing, false));
        }
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(&format!("INSERT INTO submissions ({SUBMISSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"))
            .bind(&s.id)
            .bind(&s.idempotency_key)
            .bind(&s.project_id)
            .bind(&s.item_id)
            .bind(&s.user_id)
            .bind(&s.assignment_id)
            .bind(&s.kind)
            .bind(s.answer.to_string())
            .bind(serde_json::to_string(&s.display_order)?)
            .bind(s.skip_reason.clone())
            .bind(s.time_ms)
            .bind(s.created_at)
            .execute(&mut *tx)
            .await?;
        if res.rows_affected() == 0 {
            tx.rollback().await?;
            return match self.submission_by_key(&s.user_id, &s.idempotency_key).await? {
                Some(existing) => Ok((existing, false)),
                None => {
                    Err(Error::Conflict("this assignment was already submitted with another idempotency key".into()))
                }
            };
        }
        let status = if s.kind == "skip" { "skipped" } else { "done" };
        sqlx::query("UPDATE assignments SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(&s.assignment_id)
            .execute(&mut *tx)
            .await?;
        if let Some(kept) = kept {
            super::suggestions::record_kept(&mut tx, s, kept).await?;
        }
        tx.commit().await?;
        Ok((s.clone(), true))
    }

    pub async fn submission_by_key(&self, user_id: &str, key: &str) -> Result<Option<Submission>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBMISSION_COLS} FROM submissions WHERE user_id = $1 AND idempotency_key = $2"
        ))
        .bind(user_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(submission_from).transpose()
    }

    pub async fn submissions(&self, project_id: &str) -> Result<Vec<Submission>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBMISSION_COLS} FROM submissions WHERE project_id = $1 ORDER BY created_at, id"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(submission_from).collect()
    }

    pub async fn usernames(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows = sqlx::query("SELECT id, username FROM users").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("username")?))).collect()
    }
}
