//! The OpenAPI 3.1 document for the JSON API, written out by hand (one place, tested to
//! list every `/api` route).
use axum::Json;
use serde_json::{json, Value};

pub(super) fn op(summary: &str, auth: &str, body: Option<Value>, ok: (&str, &str)) -> Value {
    let mut o = json!({
        "summary": summary,
        "description": format!("Auth: {auth}. Cookie sessions must send `x-csrf-token` on writes; bearer tokens need not."),
        "responses": {
            ok.0: {"description": ok.1},
            "400": {"description": "bad input", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "not signed in"},
            "403": {"description": "wrong role, not a project member, or bad CSRF token"},
            "404": {"description": "not found"}
        }
    });
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": b});
    }
    o
}

pub(super) fn js(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

pub fn document() -> Value {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let mut paths = json!({
        "/api/login": {"post": op("Open a session (sets the cookie; returns a bearer token and the CSRF token)", "none", Some(js(json!({"$ref": "#/components/schemas/Credentials"}))), ("200", "session"))},
        "/api/logout": {"post": op("Close this session", "signed in", None, ("204", "closed"))},
        "/api/me": {"get": op("The signed-in user and CSRF token", "signed in", None, ("200", "user"))},
        "/api/invites": {"post": op("Create an invite link", "admin", Some(js(json!({"type": "object", "required": ["role"], "properties": {"role": {"enum": ["admin", "annotator"]}, "project_id": {"type": "string"}}}))), ("201", "invite token and URL"))},
        "/api/invites/{token}/accept": {"post": op("Create the invited account and open a session", "invite token", Some(js(json!({"$ref": "#/components/schemas/Credentials"}))), ("201", "session"))},
        "/api/projects": {
            "get": op("Projects visible to the user", "signed in", None, ("200", "projects")),
            "post": op("Create a project from a task config", "admin", Some(js(json!({"type": "object", "required": ["name", "config"], "properties": {"name": {"type": "string"}, "config": {"$ref": "#/components/schemas/ProjectConfig"}}}))), ("201", "project (409 when the name is taken)"))
        },
        "/api/projects/{id}": {"get": op("One project with its config", "member or admin", None, ("200", "project"))},
        "/api/projects/{id}/members": {"post": op("Add a user to the project", "admin", Some(js(json!({"type": "object", "required": ["username"], "properties": {"username": {"type": "string"}}}))), ("204", "added"))},
        "/api/projects/{id}/items": {
            "get": op("Search and filter items, one page at a time (never claims): query q (prompt, responses, external id), status (unlabeled|in_progress|complete; a label rejected in review is not a label), annotator (username), suggested (true|false), flagged (true|false: an annotator flagged it for review), page (from 1), per_page (1-200, default 50)", "admin", None, ("200", "{items: [{id, external_id, prompt, status, labels, skips, claimed, annotators, gold, suggested, suggestion_source, flags, preview}], total, page, per_page, pages, suggestion_acceptance: {question: {kept, changed}}}")),
            "post": op("Import items from JSONL text: {prompt, responses, id?, gold?, suggestions?, suggestion_source?} or reins generate lines {prompt, completions} / {prompt, completion}", "admin", Some(json!({"application/jsonl": {"schema": {"type": "string"}}})), ("200", "{imported, duplicates, errors: [{line, message}]}"))
        },
        "/api/projects/{id}/next": {"get": op("The caller's next assignment (responses in display order, with suggestions and suggestion_source when the item has model suggestions, in display positions); 204 when none is left. An admin who is not a member gets a preview (preview: true, assignment_id null) and claims nothing", "member", None, ("200", "assignment"))},
        "/api/projects/{id}/submissions": {"post": op("Submit answers or a skip for an assignment; idempotent per idempotency_key", "member", Some(js(json!({"$ref": "#/components/schemas/Submit"}))), ("201", "stored (200 with duplicate=true for a retry; 409 when the key was used for another assignment)"))},
        "/api/projects/{id}/stats": {"get": op("Progress, throughput, agreement, per-annotator and consensus per item (source: adjudicated where a reviewer set the final answer, else majority)", "admin", None, ("200", "stats"))},
        "/api/projects/{id}/export/{format}": {"get": op("Export JSONL: preference, ranked, kto, ratings, spans, critiques, principles, raw, consensus (labels as reviewed: edits and corrections applied, rejected left out)", "admin", None, ("200", "JSONL"))},
        "/api/openapi.json": {"get": op("This document", "none", None, ("200", "OpenAPI 3.1"))},
        // edits and reviews
        "/api/projects/{id}/mine": {"get": op("The caller's 10 most recent labels: answer in the positions they saw, editable, review verdict, gold feedback (when the project sets gold_feedback)", "member", None, ("200", "{labels: [...]}"))},
        "/api/projects/{id}/flags": {"post": op("Flag an assignment for review (the annotator still labels or skips it)", "member, own assignment", Some(js(json!({"type": "object", "required": ["assignment_id", "note"], "properties": {"assignment_id": {"type": "string"}, "note": {"type": "string"}}}))), ("201", "flag"))},
        "/api/projects/{id}/submissions/{sid}/{action}": {"post": op("Change a label: `edit` (its author, one of their 10 most recent, while unreviewed; answers in the positions they saw), `accept`, `correct` (answers in item order) or `reject` (with a reason) by a reviewer. Stored as a new revision; the submission is kept.", "author (edit) / reviewer or admin", Some(js(json!({"type": "object", "properties": {"answers": {"type": "object"}, "reason": {"type": "string"}, "idempotency_key": {"type": "string"}}}))), ("201", "revision (200 with duplicate=true for a retry; 409 once reviewed)"))},
        "/api/projects/{id}/review": {"get": op("The review queue (flagged first), recent verdicts and disagreements to adjudicate", "reviewer or admin", None, ("200", "{labels, reviewed, disagreements}"))},
        "/api/projects/{id}/items/{item}/adjudicate": {"post": op("Set an item's final answer (item order); the consensus export and the stats' per-item consensus use it", "reviewer or admin", Some(js(json!({"type": "object", "required": ["answers"], "properties": {"answers": {"type": "object"}}}))), ("201", "adjudication"))},
        "/api/projects/{id}/reviewers": {"post": op("Make a user a reviewer of the project", "admin", Some(js(json!({"type": "object", "required": ["username"], "properties": {"username": {"type": "string"}}}))), ("204", "added"))}
    });
    super::accounts::document(&mut paths);
    for (path, v) in paths.as_object_mut().into_iter().flatten() {
        let mut params = Vec::new();
        if path.contains("{id}") {
            params.extend(id.as_array().cloned().unwrap_or_default());
        }
        for (name, extra) in [
            ("{token}", "token"),
            ("{format}", "format"),
            ("{sid}", "sid"),
            ("{action}", "action"),
            ("{item}", "item"),
            ("{username}", "username"),
        ] {
            if path.contains(name) {
                params.push(json!({"name": extra, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        if path.ends_with("{format}") {
            params.push(json!({"name": "split", "in": "query", "schema": {"type": "number"}, "description": "fraction of items held out for validation"}));
            params.push(json!({"name": "part", "in": "query", "schema": {"enum": ["train", "validation", "all"]}}));
        }
        for o in v.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            o["parameters"] = json!(params);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "reins feedback", "version": env!("CARGO_PKG_VERSION"), "description": "Collect human feedback (pairwise, ranking, Likert, thumbs, spans, critiques, principles) and export it for training."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "cookie": {"type": "apiKey", "in": "cookie", "name": "reins_session"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                "Credentials": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
                "ProjectConfig": {"type": "object", "required": ["questions"], "properties": {
                    "guidelines": {"type": "string", "description": "markdown"},
                    "overlap": {"type": "integer", "minimum": 1},
                    "gold_rate": {"type": "number"},
                    "claim_timeout_minutes": {"type": "integer", "minimum": 1, "description": "how long an opened task stays reserved (default 60)"},
                    "gold_feedback": {"type": "boolean", "description": "tell annotators after a gold item whether they matched (default false)"},
                    "adjudicate_below": {"type": "number", "description": "majority share below which an item goes to adjudication (default 0.5; ties always do)"},
                    "questions": {"type": "array", "items": {"type": "object", "required": ["name", "kind"], "properties": {"name": {"type": "string"}, "label": {"type": "string"}, "kind": {"enum": ["pairwise", "ranking", "likert", "thumbs", "spans", "critique", "principles"]}}}}
                }},
                "Submit": {"type": "object", "required": ["assignment_id", "idempotency_key"], "properties": {
                    "assignment_id": {"type": "string"}, "idempotency_key": {"type": "string"},
                    "answers": {"type": "object", "description": "keyed by question name, positions as displayed"},
                    "skip": {"type": "string", "description": "reason for skipping instead of answering"},
                    "time_ms": {"type": "integer"}
                }}
            }
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths
    })
}

pub async fn openapi() -> Json<Value> {
    Json(document())
}
