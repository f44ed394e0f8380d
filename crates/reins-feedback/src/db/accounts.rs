//! Accounts: users, sessions and invites.
use super::{now_ms, opt_str, random_token, Db, Role, User};
use crate::error::{Error, Result};
use sqlx::any::AnyRow;
use sqlx::Row;

pub(super) fn user_from(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: Role::parse(&row.try_get::<String, _>("role")?)?,
        password_hash: row.try_get("password_hash")?,
    })
}

impl Db {
    // ---- users and sessions
    pub async fn create_user(&self, username: &str, password_hash: &str, role: Role) -> Result<User> {
        let id = random_token();
        let res = sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(Error::Conflict(format!("username `{username}` is taken")));
        }
        Ok(User { id, username: username.into(), role, password_hash: password_hash.into() })
    }

    /// Removes a user that has no sessions, memberships or labels yet (a lost invite race).
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, username, password_hash, role FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, username, password_hash, role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn count_admins(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn create_session(&self, user_id: &str, ttl_ms: i64) -> Result<(String, String)> {
        let (token, csrf) = (random_token(), random_token());
        sqlx::query("INSERT INTO sessions (token, user_id, csrf, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&token)
            .bind(user_id)
            .bind(&csrf)
            .bind(now_ms() + ttl_ms)
            .execute(&self.pool)
            .await?;
        Ok((token, csrf))
    }

    /// The session's user and CSRF token, if the session exists and has not expired.
    pub async fn session(&self, token: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token = $1 AND s.expires_at > $2",
        )
        .bind(token)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from(&row)?, row.try_get("csrf")?))),
            None => Ok(None),
        }
    }

    pub async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token = $1").bind(token).execute(&self.pool).await?;
        Ok(())
    }

    // ---- invites
    pub async fn create_invite(
        &self,
        role: Role,
        project_id: Option<&str>,
        by: Option<&str>,
        ttl_ms: i64,
    ) -> Result<String> {
        let token = random_token();
        sqlx::query(
            "INSERT INTO invites (token, role, project_id, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token)
        .bind(role.as_str())
        .bind(project_id.map(str::to_string))
        .bind(by.map(str::to_string))
        .bind(now_ms() + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// Marks the invite used by `user_id`; returns its role and project, or None if the
    /// invite is unknown, used or expired.
    pub async fn take_invite(&self, token: &str, user_id: &str) -> Result<Option<(Role, Option<String>)>> {
        let res =
            sqlx::query("UPDATE invites SET used_by = $1 WHERE token = $2 AND used_by IS NULL AND expires_at > $3")
                .bind(user_id)
                .bind(token)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT role, project_id FROM invites WHERE token = $1")
            .bind(token)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some((Role::parse(&row.try_get::<String, _>("role")?)?, opt_str(&row, "project_id")?)))
    }

    pub async fn invite_valid(&self, token: &str) -> Result<bool> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM invites WHERE token = $1 AND used_by IS NULL AND expires_at > $2")
                .bind(token)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        Ok(n > 0)
    }

    pub async fn set_role(&self, user_id: &str, role: Role) -> Result<()> {
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
