-- Security hardening (issue 13). Portable between SQLite and PostgreSQL.

-- Sessions are looked up by the SHA-256 of their token, so a copy of the database holds no
-- usable session. Plain tokens from before cannot be converted: everyone signs in again.
DELETE FROM sessions;
ALTER TABLE sessions RENAME COLUMN token TO token_hash;

-- Usernames are compared without case and stored lower-cased. The server refuses to run
-- this step while two accounts differ only by case (it names them first).
UPDATE users SET username = lower(username);

-- Login limits and submission rate limits, shared by every web node on the database.
-- `hits` counts within the window that started at `window_start` (unix ms). A lock-out
-- row (one per account and client address) keeps its failure streak in `hits`, the time
-- of its last attempt in `window_start`, and refuses attempts until `locked_until`.
CREATE TABLE throttle (
    key TEXT PRIMARY KEY,
    hits BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE INDEX throttle_age ON throttle(window_start);
