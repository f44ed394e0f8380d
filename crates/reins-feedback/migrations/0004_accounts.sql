-- User and member management, OpenID Connect login. Portable between
-- SQLite and PostgreSQL. No semicolons in comments: the runner splits statements on them.

-- A disabled account keeps its labels, while its sessions and tokens stop working and it cannot
-- sign in until an admin enables it again. NULL = enabled.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- Invites are looked up by the SHA-256 of their token, as sessions are, so a copy of the
-- database holds no usable link. The server rewrites the plain tokens stored before in the
-- same transaction (db::migrate), so links already sent keep working.
ALTER TABLE invites RENAME COLUMN token TO token_hash;

-- A password reset link is an invite for an existing account: redeeming it sets that
-- account's password. NULL for invites that create an account.
ALTER TABLE invites ADD COLUMN reset_user_id TEXT;

-- Expired sessions are purged on every sign-in, and "every session of this user" ends on a
-- password change or when the account is disabled.
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX sessions_user ON sessions(user_id);

-- OpenID Connect sign-ins in flight: the browser holds only `state`, while the nonce, the PKCE
-- verifier, where to go afterwards and the invite it redeems (its SHA-256, if any) stay here
-- (every web node shares them), used once.
CREATE TABLE oidc_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    next_path TEXT NOT NULL,
    invite_hash TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oidc_logins_expiry ON oidc_logins(expires_at);

-- A local account linked to an identity of an issuer (`iss`, `sub` of its ID tokens).
CREATE TABLE oidc_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    email TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
