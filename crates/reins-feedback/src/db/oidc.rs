//! OpenID Connect storage: sign-ins in flight (by the SHA-256 of their `state`, used once,
//! with an expiry, shared by every web node) and identities linked to local accounts.
use super::accounts::token_hash;
use super::{now_ms, Db};
use crate::error::Result;
use sqlx::Row;

/// A sign-in in flight, as stored when it began.
pub struct OidcLogin {
    pub nonce: String,
    pub verifier: String,
    pub next_path: String,
    /// The SHA-256 of the invite this sign-in redeems, if it began on an invite page.
    pub invite_hash: Option<String>,
}

impl Db {
    pub async fn create_oidc_login(&self, state: &str, login: &OidcLogin, ttl_ms: i64) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, nonce, verifier, next_path, invite_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(state))
        .bind(&login.nonce)
        .bind(&login.verifier)
        .bind(&login.next_path)
        .bind(login.invite_hash.clone())
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sign-in that `state` began, removed so it cannot be used twice; None when it is
    /// unknown, used or expired.
    pub async fn take_oidc_login(&self, state: &str) -> Result<Option<OidcLogin>> {
        let hash = token_hash(state);
        let row = sqlx::query(
            "SELECT nonce, verifier, next_path, invite_hash FROM oidc_logins WHERE state_hash = $1 AND expires_at > $2",
        )
        .bind(&hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Two callbacks racing with one state: only the one whose delete counts goes on.
        let taken =
            sqlx::query("DELETE FROM oidc_logins WHERE state_hash = $1").bind(&hash).execute(&self.pool).await?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        Ok(Some(OidcLogin {
            nonce: row.try_get("nonce")?,
            verifier: row.try_get("verifier")?,
            next_path: row.try_get("next_path")?,
            invite_hash: super::opt_str(&row, "invite_hash")?,
        }))
    }

    /// The local account linked to this identity.
    pub async fn oidc_user(&self, issuer: &str, subject: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2")
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("user_id")?),
            None => None,
        })
    }

    pub async fn link_oidc(&self, issuer: &str, subject: &str, user_id: &str, email: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO oidc_identities (issuer, subject, user_id, email, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(user_id)
        .bind(email.map(str::to_string))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
