-- Model suggestions per item (answers in the stored form, the item's own response order)
-- and, per submission, which suggested answers the person kept unchanged. Exports read
-- neither: they hold only the person's answers.
CREATE TABLE item_suggestions (
    item_id TEXT PRIMARY KEY REFERENCES items(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    answers TEXT NOT NULL,
    source TEXT
);
CREATE TABLE suggestion_outcomes (
    submission_id TEXT PRIMARY KEY REFERENCES submissions(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    item_id TEXT NOT NULL REFERENCES items(id),
    kept TEXT NOT NULL
);
CREATE INDEX suggestion_outcomes_project ON suggestion_outcomes(project_id);
