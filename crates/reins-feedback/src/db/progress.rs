//! An annotator's place in a project ("item 3 of 40"), counted in the database so the
//! label page does not load every submission.
use super::Db;
use crate::error::Result;
use sqlx::Row;

impl Db {
    /// (items this user has labelled or skipped, items in the project).
    pub async fn progress(&self, project_id: &str, user_id: &str) -> Result<(i64, i64)> {
        // Finished assignments, through the (project_id, user_id, status) index: only this
        // user's rows are read, however many submissions the project has.
        let done = sqlx::query(
            "SELECT COUNT(DISTINCT item_id) AS n FROM assignments \
             WHERE project_id = $1 AND user_id = $2 AND status IN ('done', 'skipped')",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let total = sqlx::query("SELECT COUNT(*) AS n FROM items WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((done, total))
    }
}
