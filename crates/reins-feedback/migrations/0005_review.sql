-- Fixing and reviewing labels without touching `submissions` (append-only): every edit,
-- review and flag is a new row, and readers derive the effective answer from them.
--
-- `revisions`: an annotator's edit of their own label (`edit`), or a reviewer's verdict on
-- it (`accept`, `correct`, `reject`). `answer` holds the new answer in item order (edit,
-- correct), `note` the reason (reject). The latest edit or correction is effective.
CREATE TABLE revisions (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    submission_id TEXT NOT NULL REFERENCES submissions(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    action TEXT NOT NULL,
    answer TEXT,
    note TEXT,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX revisions_project ON revisions(project_id, created_at);
-- An annotator asks for a review of the task in front of them (they still label or skip).
CREATE TABLE flags (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    assignment_id TEXT NOT NULL REFERENCES assignments(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX flags_project ON flags(project_id, created_at);
-- A reviewer's final answer for an item whose annotators disagree (item order).
CREATE TABLE adjudications (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    item_id TEXT NOT NULL REFERENCES items(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    answer TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX adjudications_project ON adjudications(project_id, created_at);
-- Per-project reviewers (admins review every project).
CREATE TABLE reviewers (
    project_id TEXT NOT NULL REFERENCES projects(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (project_id, user_id)
)
