//! The `reins` binary's glue (`crates/reins/src/commands/serve.rs`), compiled here and run
//! through clap as the binary will: create a user and a project, import `reins generate`
//! output, label through the API, export with a validation split.
mod common;
#[path = "../../reins/src/commands/serve.rs"]
#[allow(dead_code)]
mod serve;

use clap::Parser;
use common::*;
use reins_feedback::{Db, ServerConfig};
use serde_json::json;

#[derive(Parser)]
#[command(name = "reins")]
enum Cli {
    Serve(serve::ServeArgs),
    #[command(subcommand)]
    Feedback(serve::FeedbackCmd),
}

fn run(args: &[&str]) {
    match Cli::try_parse_from(std::iter::once("reins").chain(args.iter().copied())).unwrap_or_else(|e| panic!("{e}")) {
        Cli::Serve(_) => unreachable!(),
        Cli::Feedback(cmd) => serve::run_feedback(cmd).unwrap(),
    }
}

#[test]
fn feedback_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let cfg = dir.path().join("project.json");
    std::fs::write(&cfg, pairwise_config(1).to_string()).unwrap();
    let gen = dir.path().join("generations.jsonl");
    let mut lines = String::new();
    for i in 0..10 {
        for s in ["first", "second"] {
            lines
                .push_str(&json!({"prompt": format!("q{i}"), "completion": format!("{s} answer to q{i}")}).to_string());
            lines.push('\n');
        }
    }
    std::fs::write(&gen, lines).unwrap();
    // Only this test in this binary touches the environment.
    std::env::set_var("REINS_PASSWORD", "annotator-pw");
    run(&["feedback", "create-user", "--db", &db, "--username", "ann", "--role", "annotator"]);
    run(&["feedback", "create-project", "--db", &db, "--name", "cli", "--config", cfg.to_str().unwrap()]);
    run(&["feedback", "import", "--db", &db, "--project", "cli", gen.to_str().unwrap()]);
    run(&["feedback", "invite", "--db", &db, "--project", "cli"]);
    let serve =
        Cli::try_parse_from(["reins", "serve", "--db", &db, "--addr", "127.0.0.1:0", "--rate-limit", "0"]).unwrap();
    assert!(matches!(serve, Cli::Serve(a) if a.rate_limit == 0 && a.db == db));

    // Label every item through the API, as the web page would.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let d = Db::connect(&db).await.unwrap();
        let p = reins_feedback::find_project(&d, "cli").await.unwrap();
        let ann = d.user_by_name("ann").await.unwrap().unwrap();
        d.add_member(&p.id, &ann.id).await.unwrap();
        let c = Client::new(reins_feedback::AppState::new(d, ServerConfig::default()));
        let s = c.login("ann", "annotator-pw").await;
        for n in 0..10 {
            let t = c.call("GET", &format!("/api/projects/{}/next", p.id), Auth::Bearer(&s), None).await.json();
            let r = c.call("POST", &format!("/api/projects/{}/submissions", p.id), Auth::Bearer(&s), Some(json!({"assignment_id": t["assignment_id"], "idempotency_key": n.to_string(), "answers": {"preference": {"choice": "b"}}}))).await;
            assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        }
    });
    drop(rt);
    let out = dir.path().join("export");
    run(&[
        "feedback",
        "export",
        "--db",
        &db,
        "--project",
        "cli",
        "--format",
        "preference,raw",
        "--split",
        "0.3",
        "--out",
        out.to_str().unwrap(),
    ]);
    let count = |f: &str| std::fs::read_to_string(out.join(f)).unwrap().lines().count();
    assert_eq!(count("preference.train.jsonl") + count("preference.validation.jsonl"), 10);
    assert_eq!(count("raw.train.jsonl") + count("raw.validation.jsonl"), 10);
    let row: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(out.join("preference.train.jsonl")).unwrap().lines().next().unwrap(),
    )
    .unwrap();
    assert!(row["chosen"].is_string() && row["rejected"].is_string() && row["prompt"].is_string());
}

/// `reins serve`'s library side: first-run admin bootstrap, then it answers on the address.
#[test]
fn serve_bootstraps_an_admin_and_listens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let opts = reins_feedback::cli::ServeOptions {
        db: db.clone(),
        addr: addr.clone(),
        config: ServerConfig::default(),
        admin_password: Some("first-admin-pw".into()),
        admin_user: "root".into(),
    };
    // The server thread ends with the test process.
    std::thread::spawn(move || reins_feedback::cli::serve(opts));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let body = json!({"username": "root", "password": "first-admin-pw"}).to_string();
        let start = std::time::Instant::now();
        loop {
            match http(&addr, "POST", "/api/login", &[], &body).await {
                Ok((status, text)) => {
                    assert_eq!(status, 200, "{text}");
                    break;
                }
                Err(_) if start.elapsed() < std::time::Duration::from_secs(20) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("server did not answer: {e}"),
            }
        }
        let (status, doc) = http(&addr, "GET", "/api/openapi.json", &[], "").await.unwrap();
        assert_eq!(status, 200);
        assert!(doc.contains("\"openapi\""));
    });
}

fn try_run(args: &[&str]) -> anyhow::Result<()> {
    match Cli::try_parse_from(std::iter::once("reins").chain(args.iter().copied()))? {
        Cli::Serve(_) => unreachable!(),
        Cli::Feedback(cmd) => serve::run_feedback(cmd),
    }
}

/// A second project with a taken name is refused (CLI and API), so `--project NAME`
/// always means one project.
#[test]
fn duplicate_project_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let cfg = dir.path().join("project.json");
    std::fs::write(&cfg, pairwise_config(1).to_string()).unwrap();
    let create = ["feedback", "create-project", "--db", &db, "--name", "helpful", "--config", cfg.to_str().unwrap()];
    try_run(&create).unwrap();
    let err = format!("{:#}", try_run(&create).expect_err("a second project named `helpful`"));
    assert!(err.contains("`helpful`") && err.contains("already"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = Client::new(state(&db, ServerConfig::default()).await);
        let admin = c.login("admin", ADMIN_PASSWORD).await;
        let r = c
            .call(
                "POST",
                "/api/projects",
                Auth::Cookie(&admin),
                Some(json!({"name": "helpful", "config": pairwise_config(1)})),
            )
            .await;
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert!(r.text.contains("already"), "{}", r.text);
        let projects = c.call("GET", "/api/projects", Auth::Cookie(&admin), None).await.json();
        assert_eq!(projects["projects"].as_array().unwrap().len(), 1, "{projects}");
    });
}

/// A database made before names were unique keeps its duplicates; `--project NAME` then
/// refuses and lists the ids to use instead of silently picking the oldest.
#[test]
fn an_ambiguous_project_name_in_an_old_database_lists_the_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The schema as version 1 left it, with two projects of the same name.
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{db}?mode=rwc");
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        for stmt in include_str!("../migrations/0001_init.sql").split(';') {
            let sql: String = stmt.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            if !sql.trim().is_empty() {
                sqlx::query(&sql).execute(&mut conn).await.unwrap();
            }
        }
        sqlx::query("CREATE TABLE reins_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO reins_migrations (version, applied_at) VALUES (1, 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        let cfg = pairwise_config(1).to_string();
        for (id, at) in [("old0000", 1), ("new1111", 2)] {
            sqlx::query("INSERT INTO projects (id, name, config, created_at) VALUES ($1, 'dup', $2, $3)")
                .bind(id)
                .bind(&cfg)
                .bind(at as i64)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    });
    drop(rt);
    let gen = dir.path().join("items.jsonl");
    std::fs::write(&gen, items_jsonl(2)).unwrap();
    let err = format!(
        "{:#}",
        try_run(&["feedback", "import", "--db", &db, "--project", "dup", gen.to_str().unwrap()])
            .expect_err("an ambiguous name")
    );
    assert!(err.contains("old0000") && err.contains("new1111"), "the ids to use: {err}");
    // Either id works.
    try_run(&["feedback", "import", "--db", &db, "--project", "new1111", gen.to_str().unwrap()]).unwrap();
    // The duplicates' names stay taken.
    let cfg = dir.path().join("project.json");
    std::fs::write(&cfg, pairwise_config(1).to_string()).unwrap();
    assert!(try_run(&["feedback", "create-project", "--db", &db, "--name", "dup", "--config", cfg.to_str().unwrap()])
        .is_err());
}

/// One bootstrap path: without an admin and without REINS_ADMIN_PASSWORD, `serve` stops
/// with a message saying how to create one, and leaves no admin invite behind.
#[test]
fn serve_without_an_admin_says_how_to_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedback.db").to_string_lossy().into_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts = reins_feedback::cli::ServeOptions {
        db: db.clone(),
        addr: format!("127.0.0.1:{port}"),
        config: ServerConfig::default(),
        admin_password: None,
        admin_user: "admin".into(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(reins_feedback::cli::serve(opts).map_err(|e| e.to_string())));
    // The bound only keeps a broken run from hanging; a fixed server returns at once.
    let res = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("serve kept running without an admin (it printed an admin invite instead)");
    let err = res.expect_err("serve started without an admin");
    assert!(err.contains("REINS_ADMIN_PASSWORD"), "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = reins_feedback::Db::connect(&db).await.unwrap();
        let n: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT COUNT(*) AS n FROM invites").fetch_one(&db.pool).await.unwrap(),
            "n",
        )
        .unwrap();
        assert_eq!(n, 0, "an admin invite was created");
    });
}
