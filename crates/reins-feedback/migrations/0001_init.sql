-- Portable between SQLite and PostgreSQL: text ids made by the server, BIGINT times in
-- unix milliseconds, JSON stored as TEXT. Submissions are append-only.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE sessions (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE invites (
    token TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    project_id TEXT,
    created_by TEXT,
    used_by TEXT,
    expires_at BIGINT NOT NULL
);
CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE members (
    project_id TEXT NOT NULL REFERENCES projects(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (project_id, user_id)
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    external_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    responses TEXT NOT NULL,
    gold TEXT,
    seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, external_id)
);
CREATE INDEX items_project ON items(project_id, seq);
CREATE TABLE assignments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    item_id TEXT NOT NULL REFERENCES items(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    display_order TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (item_id, user_id)
);
CREATE INDEX assignments_user ON assignments(project_id, user_id, status);
CREATE TABLE submissions (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id),
    item_id TEXT NOT NULL REFERENCES items(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    assignment_id TEXT NOT NULL UNIQUE REFERENCES assignments(id),
    kind TEXT NOT NULL,
    answer TEXT NOT NULL,
    display_order TEXT NOT NULL,
    skip_reason TEXT,
    time_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX submissions_project ON submissions(project_id, created_at);
