//! User and member management through the JSON API and the CLI: removing members (claims
//! released, labels kept), disabling users (sessions and tokens end at once), password reset
//! links and password changes (other sessions end), adding users to another project,
//! invite tokens stored hashed, expired sessions purged. On SQLite, and on PostgreSQL when
//! `REINS_TEST_POSTGRES_URL` is set.
mod common;
#[path = "../../reins/src/commands/serve.rs"]
#[allow(dead_code)]
mod serve;

use axum::http::StatusCode;
use clap::Parser;
use common::*;
use reins_feedback::{Db, Role, ServerConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

async fn setup(url: &str) -> (Client, Db, Session) {
    let st = state(url, ServerConfig::default()).await;
    let db = st.db.clone();
    let c = Client::new(st);
    let admin = c.login("admin", ADMIN_PASSWORD).await;
    (c, db, admin)
}

async fn next(c: &Client, p: &str, s: &Session) -> Value {
    let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(s), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn label(c: &Client, p: &str, s: &Session, task: &Value) {
    let body = json!({"assignment_id": task["assignment_id"], "idempotency_key": format!("k-{}", task["assignment_id"]),
                      "answers": {"preference": {"choice": "a", "strength": 1}}, "time_ms": 900});
    let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(s), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

/// Removing a member: their open claim goes back to the pool at once (another annotator
/// gets that item although the claim has not timed out), their labels stay in the
/// export, and they can no longer open the project.
async fn remove_member(url: &str) {
    let (c, db, admin) = setup(url).await;
    let p = c.project(&admin, "one", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(2)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let first = next(&c, &p, &ann).await;
    label(&c, &p, &ann, &first).await;
    let claimed = next(&c, &p, &ann).await;
    let before = reins_feedback::export_project(&db, &p, "preference", 0.0).await.unwrap();
    assert_eq!(before.train.len(), 1);

    // Without the removal, a second annotator finds nothing: one item is labelled, one claimed.
    let bob = c.annotator(&admin, &p, "bob").await;
    let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&bob), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let r = c.call("DELETE", &format!("/api/projects/{p}/members/Ann"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["released_claims"], 1);
    let r = c.call("GET", &format!("/api/projects/{p}/next"), Auth::Cookie(&ann), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a removed member cannot label: {}", r.text);
    let late = json!({"assignment_id": claimed["assignment_id"], "idempotency_key": "late",
                      "answers": {"preference": {"choice": "a"}}, "time_ms": 1});
    let r = c.call("POST", &format!("/api/projects/{p}/submissions"), Auth::Cookie(&ann), Some(late)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(next(&c, &p, &bob).await["item_id"], claimed["item_id"], "the released item goes to others");

    let after = reins_feedback::export_project(&db, &p, "preference", 0.0).await.unwrap();
    assert_eq!(after.train, before.train, "the removed member's labels stay");
    let members = c.call("GET", &format!("/api/projects/{p}/members"), Auth::Cookie(&admin), None).await.json();
    assert_eq!(members["members"], json!([{"username": "bob", "role": "annotator", "disabled": false}]));
    let r = c.call("DELETE", &format!("/api/projects/{p}/members/ann"), Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("not a member"));
}

/// Disabling: cookie sessions and bearer tokens stop at once, a correct password gets a
/// clear refusal, labels stay; enabling lets them in again.
async fn disable_user(url: &str) {
    let (c, db, admin) = setup(url).await;
    let p = c.project(&admin, "one", pairwise_config(1)).await;
    c.import(&admin, &p, &items_jsonl(2)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let bearer = c.login("ann", "annotator-pw").await;
    let t = next(&c, &p, &ann).await;
    label(&c, &p, &ann, &t).await;
    let claimed = next(&c, &p, &ann).await;

    let r = c.call("POST", "/api/users/ann/disable", Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    for auth in [Auth::Cookie(&ann), Auth::Bearer(&bearer)] {
        assert_eq!(c.call("GET", "/api/me", auth, None).await.status, StatusCode::UNAUTHORIZED);
    }
    let r =
        c.call("POST", "/api/login", Auth::None, Some(json!({"username": "ann", "password": "annotator-pw"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("disabled") && msg.contains("ask an admin"), "{msg}");
    // A wrong password says nothing about the account.
    let r =
        c.call("POST", "/api/login", Auth::None, Some(json!({"username": "ann", "password": "wrong-password"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(reins_feedback::export_project(&db, &p, "preference", 0.0).await.unwrap().train.len(), 1);
    let bob = c.annotator(&admin, &p, "bob").await;
    assert_eq!(next(&c, &p, &bob).await["item_id"], claimed["item_id"], "the disabled user's claim was released");
    let users = c.call("GET", "/api/users", Auth::Cookie(&admin), None).await.json();
    let row = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "ann").unwrap().clone();
    assert_eq!(row, json!({"username": "ann", "role": "annotator", "disabled": true, "projects": [p]}));

    let r = c.call("POST", "/api/users/ann/enable", Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let again = c.login("ann", "annotator-pw").await;
    assert_eq!(c.call("GET", "/api/me", Auth::Bearer(&again), None).await.status, StatusCode::OK);
    assert_eq!(c.call("GET", "/api/me", Auth::Bearer(&bearer), None).await.status, StatusCode::UNAUTHORIZED);
}

/// A reset link sets the password once, ends every session of that user, follows the
/// password rules, and a newer link replaces an older one. Invite and reset links are not
/// interchangeable.
async fn reset_password(url: &str) {
    let (c, _db, admin) = setup(url).await;
    let p = c.project(&admin, "one", pairwise_config(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    let old = c.call("POST", "/api/users/ann/password-reset", Auth::Cookie(&admin), None).await.json();
    let r = c.call("POST", "/api/users/ann/password-reset", Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let link = r.json()["url"].as_str().unwrap().to_string();
    assert!(link.starts_with("http://127.0.0.1:8080/reset/"), "{link}");
    let token = token_of(&link);
    let reset = |t: String, pw: &str| {
        let body = json!({"password": pw});
        let c = &c;
        async move { c.call("POST", &format!("/api/password-resets/{t}"), Auth::None, Some(body)).await }
    };
    let r = reset(token_of(old["url"].as_str().unwrap()), "new-password-1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a newer link replaces the older: {}", r.text);
    let r = reset(token.clone(), "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("8 to 1024 bytes"));
    // An invite token is no reset link, and a reset token no invite.
    let invite = c.call("POST", "/api/invites", Auth::Cookie(&admin), Some(json!({"role": "annotator"}))).await.json();
    let r = reset(invite["token"].as_str().unwrap().to_string(), "new-password-1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "mallory", "password": "mallory-pw"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    let r = reset(token.clone(), "new-password-1").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(c.call("GET", "/api/me", Auth::Cookie(&ann), None).await.status, StatusCode::UNAUTHORIZED);
    let r = reset(token, "new-password-2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a reset link works once: {}", r.text);
    c.login("ann", "new-password-1").await;
    let r =
        c.call("POST", "/api/login", Auth::None, Some(json!({"username": "ann", "password": "annotator-pw"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Changing your own password needs the current one and ends your other sessions only.
async fn change_password(url: &str) {
    let (c, _db, admin) = setup(url).await;
    let p = c.project(&admin, "one", pairwise_config(1)).await;
    let here = c.annotator(&admin, &p, "ann").await;
    let elsewhere = c.login("ann", "annotator-pw").await;
    let change = |old: &str, new: &str| {
        let body = json!({"old_password": old, "new_password": new});
        let (c, here) = (&c, &here);
        async move { c.call("POST", "/api/me/password", Auth::Cookie(here), Some(body)).await }
    };
    let r = change("wrong-password", "new-password-1").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("current password is wrong"));
    let r = change("annotator-pw", "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = c
        .call(
            "POST",
            "/api/me/password",
            Auth::CookieNoCsrf(&here),
            Some(json!({"old_password": "annotator-pw", "new_password": "new-password-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "CSRF is required: {}", r.text);
    let r = change("annotator-pw", "new-password-1").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(c.call("GET", "/api/me", Auth::Cookie(&here), None).await.status, StatusCode::OK);
    assert_eq!(c.call("GET", "/api/me", Auth::Bearer(&elsewhere), None).await.status, StatusCode::UNAUTHORIZED);
    c.login("ann", "new-password-1").await;
}

/// An existing user joins a second project by username and sees both.
async fn add_to_second_project(url: &str) {
    let (c, _db, admin) = setup(url).await;
    let p1 = c.project(&admin, "first", pairwise_config(1)).await;
    let p2 = c.project(&admin, "second", pairwise_config(1)).await;
    let ann = c.annotator(&admin, &p1, "ann").await;
    let r = c
        .call("POST", &format!("/api/projects/{p2}/members"), Auth::Cookie(&admin), Some(json!({"username": "ANN"})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let mine = c.call("GET", "/api/projects", Auth::Cookie(&ann), None).await.json();
    let names: Vec<&str> = mine["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "second"]);
    let r = c
        .call("POST", &format!("/api/projects/{p2}/members"), Auth::Cookie(&admin), Some(json!({"username": "nobody"})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("no user `nobody`"));
}

macro_rules! on_both {
    ($name:ident, $pg:ident, $f:ident) => {
        #[tokio::test]
        async fn $name() {
            let db = sqlite_db();
            $f(&db.url).await;
        }
        #[tokio::test]
        async fn $pg() {
            let Some(db) = postgres_db().await else {
                return;
            };
            $f(&db.url).await;
        }
    };
}
on_both!(removing_a_member_releases_claims_and_keeps_labels, removing_a_member_on_postgres, remove_member);
on_both!(disabling_a_user_ends_sessions_and_tokens_at_once, disabling_a_user_on_postgres, disable_user);
on_both!(a_reset_link_sets_the_password_once_and_ends_sessions, a_reset_link_on_postgres, reset_password);
on_both!(changing_your_password_needs_the_old_one, changing_your_password_on_postgres, change_password);
on_both!(an_existing_user_joins_a_second_project, joining_a_second_project_on_postgres, add_to_second_project);

#[tokio::test]
async fn nobody_can_lock_everyone_out() {
    let db = sqlite_db();
    let (c, db, admin) = setup(&db.url).await;
    let r = c.call("POST", "/api/users/admin/disable", Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.json()["error"].as_str().unwrap().contains("cannot disable your own account"));
    // Without an acting admin (the CLI), the last enabled admin is still refused.
    let e = reins_feedback::api::accounts::set_disabled(&db, None, "admin", true).await.unwrap_err();
    assert!(e.to_string().contains("last enabled admin"), "{e}");
    reins_feedback::create_user(&db, "second", "second-admin-pw", Role::Admin).await.unwrap();
    let second = c.login("second", "second-admin-pw").await;
    let r = c.call("POST", "/api/users/admin/disable", Auth::Cookie(&second), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "another admin may: {}", r.text);
    let e = reins_feedback::api::accounts::set_disabled(&db, None, "second", true).await.unwrap_err();
    assert!(e.to_string().contains("last enabled admin"), "{e}");
}

#[tokio::test]
async fn only_admins_manage_people() {
    let db = sqlite_db();
    let (c, _db, admin) = setup(&db.url).await;
    let p = c.project(&admin, "one", pairwise_config(1)).await;
    let ann = c.annotator(&admin, &p, "ann").await;
    c.annotator(&admin, &p, "bob").await;
    for (method, path) in [
        ("GET", "/api/users".to_string()),
        ("POST", "/api/users/bob/disable".into()),
        ("POST", "/api/users/bob/enable".into()),
        ("POST", "/api/users/bob/password-reset".into()),
        ("GET", format!("/api/projects/{p}/members")),
        ("DELETE", format!("/api/projects/{p}/members/bob")),
        ("GET", "/people".into()),
    ] {
        let r = c.call(method, &path, Auth::Cookie(&ann), None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.text);
        let r = c.call(method, &path, Auth::None, None).await;
        assert!(matches!(r.status.as_u16(), 401 | 303), "{method} {path} signed out: {}", r.status);
    }
    // Writes with a cookie need the CSRF header.
    let r = c.call("POST", "/api/users/bob/disable", Auth::CookieNoCsrf(&admin), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = c.call("POST", "/api/users/nobody/disable", Auth::Cookie(&admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn invite_and_reset_tokens_are_stored_as_sha256() {
    let db = sqlite_db();
    let (c, db, admin) = setup(&db.url).await;
    let v = c.call("POST", "/api/invites", Auth::Cookie(&admin), Some(json!({"role": "annotator"}))).await.json();
    let token = v["token"].as_str().unwrap();
    let reset = c.call("POST", "/api/users/admin/password-reset", Auth::Cookie(&admin), None).await.json();
    let reset = token_of(reset["url"].as_str().unwrap());
    let mut stored: Vec<String> = sqlx::query("SELECT token_hash FROM invites")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("token_hash"))
        .collect();
    stored.sort();
    let mut want = [sha256_hex(token), sha256_hex(&reset)];
    want.sort();
    assert_eq!(stored, want);
    let r = c
        .call(
            "POST",
            &format!("/api/invites/{token}/accept"),
            Auth::None,
            Some(json!({"username": "ann", "password": "annotator-pw"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// A database made before migration 4 holds plain invite tokens: they are hashed on the
/// upgrade, and the links already sent keep working.
#[tokio::test]
async fn upgrading_hashes_the_invites_already_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db").to_string_lossy().into_owned();
    sqlx::any::install_default_drivers();
    {
        let mut conn =
            <sqlx::AnyConnection as sqlx::Connection>::connect(&format!("sqlite://{path}?mode=rwc")).await.unwrap();
        sqlx::query("CREATE TABLE reins_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        for (v, sql) in [
            (1, include_str!("../migrations/0001_init.sql")),
            (2, include_str!("../migrations/0002_security.sql")),
            (3, include_str!("../migrations/0003_data.sql")),
        ] {
            for stmt in sql.split(';') {
                let code: String =
                    stmt.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
                if !code.trim().is_empty() {
                    sqlx::query(&code).execute(&mut conn).await.unwrap();
                }
            }
            sqlx::query("INSERT INTO reins_migrations (version, applied_at) VALUES ($1, 0)")
                .bind(v as i64)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO invites (token, role, project_id, created_by, used_by, expires_at) VALUES ('plain-old-token', 'annotator', NULL, NULL, NULL, $1)")
            .bind(reins_feedback::db::now_ms() + 3_600_000)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (c, db, _admin) = setup(&path).await;
    let stored: String =
        sqlx::query("SELECT token_hash FROM invites").fetch_one(&db.pool).await.unwrap().get("token_hash");
    assert_eq!(stored, sha256_hex("plain-old-token"));
    let r = c
        .call(
            "POST",
            "/api/invites/plain-old-token/accept",
            Auth::None,
            Some(json!({"username": "ann", "password": "annotator-pw"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn expired_sessions_are_purged_on_login() {
    let db = sqlite_db();
    let (c, db, _admin) = setup(&db.url).await;
    let admin = db.user_by_name("admin").await.unwrap().unwrap();
    for hash in ["expired-1", "expired-2"] {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf, expires_at) VALUES ($1, $2, 'x', $3)")
            .bind(hash)
            .bind(&admin.id)
            .bind(reins_feedback::db::now_ms() - 1000)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let count = |db: Db| async move {
        sqlx::query("SELECT COUNT(*) AS n FROM sessions").fetch_one(&db.pool).await.unwrap().get::<i64, _>("n")
    };
    // The first login's session and the two expired ones.
    assert_eq!(count(db.clone()).await, 3);
    c.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(count(db.clone()).await, 2, "the expired sessions are gone; the two live ones stay");
}

// ---- the CLI (`reins feedback ...`), through the binary's own clap glue

#[derive(Parser)]
#[command(name = "reins")]
enum Cli {
    #[command(subcommand)]
    Feedback(serve::FeedbackCmd),
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let Cli::Feedback(cmd) =
        Cli::try_parse_from(std::iter::once("reins").chain(args.iter().copied())).unwrap_or_else(|e| panic!("{e}"));
    serve::run_feedback(cmd)
}

#[test]
fn cli_manages_users_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, db, admin) = rt.block_on(setup(&path));
    let (p, ann) = rt.block_on(async {
        let p = c.project(&admin, "cli", pairwise_config(1)).await;
        c.import(&admin, &p, &items_jsonl(2)).await;
        let ann = c.annotator(&admin, &p, "ann").await;
        c.project(&admin, "other", pairwise_config(1)).await;
        next(&c, &p, &ann).await;
        (p, ann)
    });
    let member = |project: &str| {
        let (db, project) = (db.clone(), project.to_string());
        rt.block_on(async move {
            let p = reins_feedback::find_project(&db, &project).await.unwrap();
            db.members(&p.id).await.unwrap().iter().map(|m| m.username.clone()).collect::<Vec<_>>()
        })
    };
    run(&["feedback", "add-member", "--db", &path, "--project", "other", "--username", "ann"]).unwrap();
    assert_eq!(member("other"), ["ann"]);
    run(&["feedback", "remove-member", "--db", &path, "--project", "cli", "--username", "ann"]).unwrap();
    assert!(member("cli").is_empty());
    let open: i64 = rt.block_on(async {
        sqlx::query("SELECT COUNT(*) AS n FROM assignments WHERE status = 'open'")
            .fetch_one(&db.pool)
            .await
            .unwrap()
            .get("n")
    });
    assert_eq!(open, 0, "the claim was released");
    let e = run(&["feedback", "remove-member", "--db", &path, "--project", &p, "--username", "ann"]).unwrap_err();
    assert!(format!("{e:#}").contains("not a member"), "{e:#}");

    run(&["feedback", "disable-user", "--db", &path, "--username", "ann"]).unwrap();
    rt.block_on(async {
        assert_eq!(c.call("GET", "/api/me", Auth::Bearer(&ann), None).await.status, StatusCode::UNAUTHORIZED)
    });
    let e = run(&["feedback", "disable-user", "--db", &path, "--username", "admin"]).unwrap_err();
    assert!(format!("{e:#}").contains("last enabled admin"), "{e:#}");
    run(&["feedback", "enable-user", "--db", &path, "--username", "ann"]).unwrap();
    rt.block_on(c.login("ann", "annotator-pw"));

    run(&["feedback", "reset-password", "--db", &path, "--username", "ann"]).unwrap();
    let link = reins_feedback::cli::reset_password(&path, "ann", "https://label.example.org/").unwrap();
    assert!(link.starts_with("https://label.example.org/reset/"), "{link}");
    rt.block_on(async {
        let r = c
            .call(
                "POST",
                &format!("/api/password-resets/{}", token_of(&link)),
                Auth::None,
                Some(json!({"password": "from-the-cli"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        c.login("ann", "from-the-cli").await;
    });
}
