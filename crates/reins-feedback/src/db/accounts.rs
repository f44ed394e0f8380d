//! Accounts: users, sessions and invites.
//!
//! Sessions and invites are stored by the SHA-256 of their token: the token has 128 random
//! bits, so a fast hash suffices (no salt or argon2 needed), and a leaked database opens no
//! session and redeems no invite.
use super::{now_ms, opt_str, random_token, Db, Role, User};
use crate::auth::normalize_username;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
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
    /// The username is stored lower-cased; one differing only by case is taken.
    pub async fn create_user(&self, username: &str, password_hash: &str, role: Role) -> Result<User> {
        let username = &normalize_username(username);
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
            .bind(normalize_username(username))
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

    /// Opens a session. Expired sessions of everyone are purged here: sign-ins are rare
    /// enough to pay for it, and a web node needs no timer of its own.
    pub async fn create_session(&self, user_id: &str, ttl_ms: i64) -> Result<(String, String)> {
        self.purge_expired_sessions().await?;
        let (token, csrf) = (random_token(), random_token());
        sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash(&token))
            .bind(user_id)
            .bind(&csrf)
            .bind(now_ms() + ttl_ms)
            .execute(&self.pool)
            .await?;
        Ok((token, csrf))
    }

    /// The session's user and CSRF token, if the session exists, has not expired and its
    /// user is not disabled.
    pub async fn session(&self, token: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_hash(token))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((user_from(&row)?, row.try_get("csrf")?))),
            None => Ok(None),
        }
    }

    pub async fn delete_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash(token)).execute(&self.pool).await?;
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
            "INSERT INTO invites (token_hash, role, project_id, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token))
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
        self.take_invite_hashed(&token_hash(token), user_id).await
    }

    /// [`Db::take_invite`] by the token's SHA-256 (an OpenID sign-in keeps only that).
    pub async fn take_invite_hashed(&self, hash: &str, user_id: &str) -> Result<Option<(Role, Option<String>)>> {
        let res =
            sqlx::query("UPDATE invites SET used_by = $1 WHERE token_hash = $2 AND used_by IS NULL AND expires_at > $3 AND reset_user_id IS NULL")
                .bind(user_id)
                .bind(hash)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT role, project_id FROM invites WHERE token_hash = $1")
            .bind(hash)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some((Role::parse(&row.try_get::<String, _>("role")?)?, opt_str(&row, "project_id")?)))
    }

    pub async fn invite_valid(&self, token: &str) -> Result<bool> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM invites WHERE token_hash = $1 AND used_by IS NULL AND expires_at > $2 AND reset_user_id IS NULL")
                .bind(token_hash(token))
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

/// Before usernames are lower-cased (migration 2): accounts that differ only by case
/// would collide, so the server stops and names them.
pub(super) async fn refuse_case_duplicates(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query(
        "SELECT username FROM users WHERE lower(username) IN (SELECT lower(username) FROM users GROUP BY lower(username) HAVING COUNT(*) > 1) ORDER BY username",
    )
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let names = rows.iter().map(|r| r.try_get::<String, _>("username")).collect::<Result<Vec<_>, _>>()?;
    Err(Error::Conflict(format!(
        "usernames are now compared without case, and these accounts differ only by case: {}; \
         rename all but one (UPDATE users SET username = '...' WHERE username = '...') and start again",
        names.join(", ")
    )))
}

/// Migration 4: invites stored before it hold their plain token; store its hash instead,
/// so links already sent keep working.
pub(super) async fn hash_plain_invites(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<()> {
    let rows = sqlx::query("SELECT token_hash FROM invites").fetch_all(&mut **tx).await?;
    for row in rows {
        let plain: String = row.try_get("token_hash")?;
        sqlx::query("UPDATE invites SET token_hash = $1 WHERE token_hash = $2")
            .bind(token_hash(&plain))
            .bind(&plain)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// SHA-256 of a session or invite token, hex: what the `sessions` and `invites` tables store.
pub(crate) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
