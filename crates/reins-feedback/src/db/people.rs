//! People: disabling accounts, memberships, password changes and reset links.
//!
//! Nothing here deletes a label: a removed member's or a disabled user's submissions stay,
//! so exports do not change. What goes is access (sessions, memberships) and unfinished
//! claims, so their items go to others at once instead of after the claim timeout.
use super::accounts::token_hash;
use super::{now_ms, random_token, Db, Role};
use crate::error::Result;
use serde::Serialize;
use sqlx::Row;

/// A user as the people page and `GET /api/users` show them.
#[derive(Clone, Debug, Serialize)]
pub struct Person {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    /// Ids of the projects this user is a member of, oldest project first.
    pub projects: Vec<String>,
}

/// A project member.
#[derive(Clone, Debug, Serialize)]
pub struct Member {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
}

impl Db {
    /// Every user, by name, with their memberships.
    pub async fn people(&self) -> Result<Vec<Person>> {
        let rows = sqlx::query("SELECT id, username, role, disabled_at FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?;
        let links = sqlx::query(
            "SELECT m.user_id, m.project_id FROM members m JOIN projects p ON p.id = m.project_id ORDER BY p.created_at, p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_user: std::collections::HashMap<String, Vec<String>> = Default::default();
        for l in &links {
            by_user.entry(l.try_get("user_id")?).or_default().push(l.try_get("project_id")?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let projects = by_user.remove(&id).unwrap_or_default();
            out.push(Person {
                username: row.try_get("username")?,
                role: Role::parse(&row.try_get::<String, _>("role")?)?,
                disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                projects,
            });
        }
        Ok(out)
    }

    /// A project's members, by name.
    pub async fn members(&self, project_id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.username, u.role, u.disabled_at FROM members m JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY u.username",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    username: row.try_get("username")?,
                    role: Role::parse(&row.try_get::<String, _>("role")?)?,
                    disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
                })
            })
            .collect()
    }

    /// Ends the membership and releases the member's unfinished claims in the project (their
    /// items go to others at once). Returns `(was a member, claims released)`.
    pub async fn remove_member(&self, project_id: &str, user_id: &str) -> Result<(bool, u64)> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // An open claim has no submission (a submission marks it done or skipped).
        let released =
            sqlx::query("DELETE FROM assignments WHERE project_id = $1 AND user_id = $2 AND status = 'open'")
                .bind(project_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok((removed > 0, released))
    }

    pub async fn is_disabled(&self, user_id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT disabled_at FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(row) => row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
            None => false,
        })
    }

    /// Disables (ending every session and token of the user at once, and releasing their
    /// unfinished claims in every project, since they cannot finish them) or enables a user.
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if disabled {
            // Keeps the first time it was disabled.
            sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
                .bind(now_ms())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM assignments WHERE user_id = $1 AND status = 'open'")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1").bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Admins who can still sign in.
    pub async fn count_enabled_admins(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled_at IS NULL")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Sets the password hash and ends every session of the user except `keep` (the
    /// session that changed it, if any).
    pub async fn set_password(&self, user_id: &str, password_hash: &str, keep: Option<&str>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        match keep {
            Some(token) => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
                    .bind(user_id)
                    .bind(token_hash(token))
                    .execute(&mut *tx)
                    .await?
            }
            None => sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?,
        };
        tx.commit().await?;
        Ok(())
    }

    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    // ---- password reset links (invites for an existing account)
    /// A one-time link token that sets `user_id`'s password. Earlier unused links for the
    /// same user stop working: only the newest one given out is valid.
    pub async fn create_reset(&self, user_id: &str, by: Option<&str>, ttl_ms: i64) -> Result<String> {
        let token = random_token();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM invites WHERE reset_user_id = $1 AND used_by IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO invites (token_hash, role, project_id, created_by, expires_at, reset_user_id) VALUES ($1, 'reset', NULL, $2, $3, $4)",
        )
        .bind(token_hash(&token))
        .bind(by.map(str::to_string))
        .bind(now_ms() + ttl_ms)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The user a reset link is for, if it is unknown, used or expired: None.
    pub async fn reset_user(&self, token: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT reset_user_id FROM invites WHERE token_hash = $1 AND reset_user_id IS NOT NULL AND used_by IS NULL AND expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("reset_user_id")?),
            None => None,
        })
    }

    /// Marks a reset link used (once: a second redeemer gets None) and returns its user.
    pub async fn take_reset(&self, token: &str) -> Result<Option<String>> {
        let Some(user_id) = self.reset_user(token).await? else {
            return Ok(None);
        };
        let res = sqlx::query(
            "UPDATE invites SET used_by = reset_user_id WHERE token_hash = $1 AND used_by IS NULL AND expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok((res.rows_affected() == 1).then_some(user_id))
    }
}
