-- One reviewer verdict per label, kept by the database: two reviewers acting at once both
-- pass the API's check, and only this index makes the second insert a no-op (refused with
-- 409), so exports and item search never disagree about a label's state.
CREATE UNIQUE INDEX revisions_one_verdict ON revisions(submission_id) WHERE action IN ('accept', 'correct', 'reject')
