//! Item search and filters for admins: text search over prompt, responses and external id,
//! status, annotator, suggestions and review flags, one page at a time. Read-only: nothing
//! is claimed. A label rejected in review (assignment status `rejected`) is not a label
//! here, as everywhere else (see `crate::review`): it counts neither for the status nor for
//! the annotator.
use super::records::{item_from, submission_from, SUBMISSION_COLS};
use super::{Db, Item, Submission};
use crate::error::Result;
use sqlx::Row;

/// Where an item stands: no label and no live claim / some labels or a live claim but fewer
/// than the overlap / at least `overlap` labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Unlabeled,
    InProgress,
    Complete,
}

impl ItemStatus {
    pub const NAMES: &'static str = "unlabeled, in_progress, complete";
    pub fn parse(s: &str) -> Option<ItemStatus> {
        match s {
            "unlabeled" => Some(ItemStatus::Unlabeled),
            "in_progress" => Some(ItemStatus::InProgress),
            "complete" => Some(ItemStatus::Complete),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    /// Case-insensitive (ASCII) substring of the prompt, a response or the external id.
    pub text: Option<String>,
    pub status: Option<ItemStatus>,
    /// Items this user has labelled or skipped.
    pub annotator_id: Option<String>,
    /// Items with (true) or without (false) model suggestions.
    pub suggested: Option<bool>,
    /// Items with (true) or without (false) a flag asking for review (`flags`, migration 5).
    pub flagged: Option<bool>,
    /// Labels an item needs to be complete (the project's overlap).
    pub overlap: i64,
    /// Open claims made after this time (unix ms) are live.
    pub claimed_since: i64,
}

#[derive(Clone, Debug)]
pub struct ItemRow {
    pub item: Item,
    pub labels: i64,
    pub skips: i64,
    pub live_claims: i64,
    pub suggestion_source: Option<String>,
    pub suggested: bool,
    /// Flags on the item's assignments.
    pub flags: i64,
    /// Usernames of the people who labelled or skipped it.
    pub annotators: Vec<String>,
}

impl ItemRow {
    pub fn status(&self, overlap: i64) -> ItemStatus {
        if self.labels >= overlap {
            ItemStatus::Complete
        } else if self.labels > 0 || self.live_claims > 0 {
            ItemStatus::InProgress
        } else {
            ItemStatus::Unlabeled
        }
    }
}

/// Placeholders are numbered in order of first use, one per bound value (see `db`).
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

enum Arg {
    Str(String),
    Int(i64),
}

impl Sql {
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }
    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Str(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// `LIKE` pattern for a substring, with `\` as the escape character.
fn contains_pattern(s: &str) -> String {
    let mut out = String::from("%");
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Labels of item `i`: its finished assignments, neither skipped nor rejected in review.
const LABELS: &str = "(SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.status = 'done')";

/// Flags on item `i`: an annotator flags the assignment in front of them.
const FLAGS: &str =
    "(SELECT COUNT(*) FROM flags f JOIN assignments fa ON fa.id = f.assignment_id WHERE fa.item_id = i.id)";

fn claims_sql(sql: &mut Sql, since: i64) -> String {
    let p = sql.arg(Arg::Int(since));
    format!("(SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.status = 'open' AND a.created_at > {p})")
}

fn where_clause(sql: &mut Sql, project_id: &str, f: &ItemFilter) {
    let p = sql.arg(Arg::Str(project_id.into()));
    sql.text.push_str(&format!(" WHERE i.project_id = {p}"));
    if let Some(text) = f.text.as_deref().filter(|t| !t.is_empty()) {
        let lower = text.to_lowercase();
        // Responses are stored as a JSON list: match the query as JSON escapes it there.
        let json = serde_json::to_string(&lower).unwrap_or_default();
        let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default();
        let a = sql.arg(Arg::Str(contains_pattern(&lower)));
        let b = sql.arg(Arg::Str(contains_pattern(json)));
        let c = sql.arg(Arg::Str(contains_pattern(&lower)));
        sql.text.push_str(&format!(
            " AND (LOWER(i.prompt) LIKE {a} ESCAPE '\\' OR LOWER(i.responses) LIKE {b} ESCAPE '\\' \
             OR LOWER(i.external_id) LIKE {c} ESCAPE '\\')"
        ));
    }
    if let Some(status) = f.status {
        let labels = LABELS;
        let cond = match status {
            ItemStatus::Complete => format!("{labels} >= {}", sql.arg(Arg::Int(f.overlap))),
            ItemStatus::InProgress => {
                let k = sql.arg(Arg::Int(f.overlap));
                let claims = claims_sql(sql, f.claimed_since);
                format!("{labels} < {k} AND ({labels} > 0 OR {claims} > 0)")
            }
            ItemStatus::Unlabeled => format!("{labels} = 0 AND {} = 0", claims_sql(sql, f.claimed_since)),
        };
        sql.text.push_str(&format!(" AND {cond}"));
    }
    if let Some(user) = &f.annotator_id {
        let u = sql.arg(Arg::Str(user.clone()));
        sql.text.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM assignments b WHERE b.item_id = i.id AND b.user_id = {u} \
             AND b.status IN ('done', 'skipped'))"
        ));
    }
    match f.suggested {
        Some(true) => sql.text.push_str(" AND s.item_id IS NOT NULL"),
        Some(false) => sql.text.push_str(" AND s.item_id IS NULL"),
        None => {}
    }
    match f.flagged {
        Some(true) => sql.text.push_str(&format!(" AND {FLAGS} > 0")),
        Some(false) => sql.text.push_str(&format!(" AND {FLAGS} = 0")),
        None => {}
    }
}

const FROM: &str = " FROM items i LEFT JOIN item_suggestions s ON s.item_id = i.id";

impl Db {
    /// One page of the items matching `f`, in import order, and how many match in all.
    pub async fn search_items(
        &self,
        project_id: &str,
        f: &ItemFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ItemRow>, i64)> {
        let mut count = Sql { text: format!("SELECT COUNT(*) AS n{FROM}"), args: vec![] };
        where_clause(&mut count, project_id, f);
        let total: i64 = count.query().fetch_one(&self.pool).await?.try_get("n")?;

        let mut sql = Sql::default();
        let claims = claims_sql(&mut sql, f.claimed_since);
        sql.text = format!(
            "SELECT i.id, i.project_id, i.external_id, i.prompt, i.responses, i.gold, s.item_id AS suggested, \
             s.source AS suggestion_source, {LABELS} AS labels, \
             (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.id AND a.status = 'skipped') AS skips, \
             {FLAGS} AS flags, {claims} AS claims{FROM}"
        );
        where_clause(&mut sql, project_id, f);
        let l = sql.arg(Arg::Int(limit));
        let o = sql.arg(Arg::Int(offset));
        sql.text.push_str(&format!(" ORDER BY i.seq LIMIT {l} OFFSET {o}"));
        let rows = sql.query().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(ItemRow {
                item: item_from(row)?,
                labels: row.try_get("labels")?,
                skips: row.try_get("skips")?,
                live_claims: row.try_get("claims")?,
                suggestion_source: super::opt_str(row, "suggestion_source")?,
                suggested: super::opt_str(row, "suggested")?.is_some(),
                flags: row.try_get("flags")?,
                annotators: vec![],
            });
        }
        if !out.is_empty() {
            let mut names = Sql::default();
            let ids: Vec<String> = out.iter().map(|r| names.arg(Arg::Str(r.item.id.clone()))).collect();
            names.text = format!(
                "SELECT a.item_id, u.username FROM assignments a JOIN users u ON u.id = a.user_id \
                 WHERE a.item_id IN ({}) AND a.status IN ('done', 'skipped') ORDER BY a.created_at, u.username",
                ids.join(", ")
            );
            for row in names.query().fetch_all(&self.pool).await? {
                let item: String = row.try_get("item_id")?;
                let name: String = row.try_get("username")?;
                if let Some(r) = out.iter_mut().find(|r| r.item.id == item) {
                    r.annotators.push(name);
                }
            }
        }
        Ok((out, total))
    }

    /// Usernames of a project's members, for the annotator filter.
    pub async fn member_names(&self, project_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT u.username FROM members m JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY u.username",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.try_get("username")).collect::<std::result::Result<_, _>>()?)
    }

    /// The submissions on one item, oldest first (the item preview).
    pub async fn item_submissions(&self, item_id: &str) -> Result<Vec<Submission>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBMISSION_COLS} FROM submissions WHERE item_id = $1 ORDER BY created_at, id"
        ))
        .bind(item_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(submission_from).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
