//! Login limits and the submission rate limit. All state is in the database
//! ([`crate::db::Db::lock_counters`]), so every web node on it applies the same limits and a
//! restart forgets nothing.
//!
//! A login attempt is counted as a failure *before* its password is checked and refunded if
//! it succeeds, so parallel guesses cannot all slip in under the limit. Three limits apply:
//!
//! - per (account, address): [`PAIR_FREE_FAILURES`] failures, then a lock-out that doubles
//!   with each further failure (1, 2, 4, ... minutes, at most [`MAX_BACKOFF_MS`]); a success
//!   clears it. This is what stops one guesser.
//! - per address, all accounts: `login_failures_per_address` a minute (password spraying).
//! - per account, all addresses: `login_failures_per_user` a minute. It refuses only
//!   addresses that already failed for this account: an address with no failures still gets
//!   its try, so strangers cannot lock the owner out, and a distributed guesser gets one
//!   guess per fresh address.
use crate::app::AppState;
use crate::db::{now_ms, window_of, Counter};
use crate::error::{Error, Result};

/// Failures per (account, address) before the lock-out starts.
/// Ten, as the limit per account was before lock-outs became per address.
pub const PAIR_FREE_FAILURES: i64 = 10;
/// First lock-out; each further failure doubles it.
pub const BASE_BACKOFF_MS: i64 = 60_000;
pub const MAX_BACKOFF_MS: i64 = 3_600_000;
/// A failure streak with no attempt for this long starts over.
pub const STREAK_RESET_MS: i64 = 24 * 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// Lock-out after the `failures`-th consecutive failure of one (account, address).
pub fn backoff_ms(failures: i64) -> i64 {
    if failures < PAIR_FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - PAIR_FREE_FAILURES).min(16) as u32;
    (BASE_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

/// A reserved login attempt: report its outcome with [`LoginAttempt::succeeded`]; a failure
/// needs no report (it was counted up front).
pub struct LoginAttempt {
    keys: Keys,
    minute: i64,
}

struct Keys {
    address: String,
    user: String,
    pair: String,
}

impl Keys {
    fn new(username: &str, address: &str) -> Keys {
        // Usernames never contain `|` (see `auth::check_username`); unknown ones are only keys.
        let user = crate::auth::normalize_username(username);
        Keys {
            address: format!("login-addr|{address}"),
            pair: format!("login-pair|{user}|{address}"),
            user: format!("login-user|{user}"),
        }
    }
}

fn throttled(what: &str, retry_ms: i64) -> Error {
    let retry_after_s = ((retry_ms.max(0) + 999) / 1000) as u64;
    Error::Throttled {
        message: format!(
            "too many failed logins {what}: wait {retry_after_s} s and try again (or ask an admin for a new invite)"
        ),
        retry_after_s,
    }
}

/// Checks the login limits for `username` from `address` and counts the attempt as a
/// failure; `Err(Throttled)` (429) when a limit is reached.
pub async fn reserve_login(state: &AppState, username: &str, address: &str) -> Result<LoginAttempt> {
    let cfg = &state.config;
    let now = now_ms();
    let minute = window_of(now, MINUTE_MS);
    let next_minute = minute + MINUTE_MS - now;
    let keys = Keys::new(username, address);
    if rand::random_ratio(1, 64) {
        state.db.prune_counters(now, STREAK_RESET_MS).await?;
    }
    let mut locked = state.db.lock_counters().await?;
    let addr = locked.get(&keys.address).await?;
    let addr_hits = addr.hits_in_window(now, MINUTE_MS);
    if cfg.login_failures_per_address > 0 && addr_hits >= cfg.login_failures_per_address as i64 {
        return Err(throttled("from your address", next_minute));
    }
    let user = locked.get(&keys.user).await?;
    let user_hits = user.hits_in_window(now, MINUTE_MS);
    let pair = locked.get(&keys.pair).await?;
    if pair.locked_until > now {
        return Err(throttled("for this account from your address", pair.locked_until - now));
    }
    let streak = if now - pair.window_start > STREAK_RESET_MS { 0 } else { pair.hits };
    if streak > 0 && cfg.login_failures_per_user > 0 && user_hits >= cfg.login_failures_per_user as i64 {
        return Err(throttled("for this account", next_minute));
    }
    locked.set(&keys.address, Counter { hits: addr_hits + 1, window_start: minute, locked_until: 0 }).await?;
    locked.set(&keys.user, Counter { hits: user_hits + 1, window_start: minute, locked_until: 0 }).await?;
    let failures = streak + 1;
    let backoff = backoff_ms(failures);
    let locked_until = if backoff > 0 { now + backoff } else { 0 };
    locked.set(&keys.pair, Counter { hits: failures, window_start: now, locked_until }).await?;
    locked.commit().await?;
    Ok(LoginAttempt { keys, minute })
}

impl LoginAttempt {
    /// The password was right: clear this address's streak and refund the attempt.
    pub async fn succeeded(self, state: &AppState) -> Result<()> {
        let mut locked = state.db.lock_counters().await?;
        for key in [&self.keys.address, &self.keys.user] {
            let c = locked.get(key).await?;
            if c.window_start == self.minute && c.hits > 0 {
                locked.set(key, Counter { hits: c.hits - 1, ..c }).await?;
            }
        }
        locked.get(&self.keys.pair).await?;
        locked.remove(&self.keys.pair).await?;
        locked.commit().await
    }
}

/// Submissions per user per minute (`rate_limit_per_minute`, fixed windows, shared by all
/// nodes); `Err(Throttled)` once the minute's budget is spent.
pub async fn count_submission(state: &AppState, user_id: &str) -> Result<()> {
    let limit = state.config.rate_limit_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let now = now_ms();
    let minute = window_of(now, MINUTE_MS);
    let key = format!("submit|{user_id}");
    let mut locked = state.db.lock_counters().await?;
    let c = locked.get(&key).await?;
    let hits = c.hits_in_window(now, MINUTE_MS);
    if hits >= limit as i64 {
        let retry_after_s = ((minute + MINUTE_MS - now + 999) / 1000) as u64;
        return Err(Error::Throttled {
            message: format!("too many submissions: at most {limit} per minute; wait {retry_after_s} s and retry"),
            retry_after_s,
        });
    }
    locked.set(&key, Counter { hits: hits + 1, window_start: minute, locked_until: 0 }).await?;
    locked.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        assert_eq!(backoff_ms(PAIR_FREE_FAILURES - 1), 0);
        assert_eq!(backoff_ms(PAIR_FREE_FAILURES), BASE_BACKOFF_MS);
        assert_eq!(backoff_ms(PAIR_FREE_FAILURES + 1), 2 * BASE_BACKOFF_MS);
        assert_eq!(backoff_ms(PAIR_FREE_FAILURES + 2), 4 * BASE_BACKOFF_MS);
        assert_eq!(backoff_ms(PAIR_FREE_FAILURES + 40), MAX_BACKOFF_MS);
    }

    #[test]
    fn windows_are_aligned() {
        assert_eq!(window_of(125_000, 60_000), 120_000);
        let c = Counter { hits: 3, window_start: 120_000, locked_until: 0 };
        assert_eq!(c.hits_in_window(179_999, 60_000), 3);
        assert_eq!(c.hits_in_window(180_000, 60_000), 0);
    }
}
