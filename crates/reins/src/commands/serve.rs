//! `reins serve` (the annotation web app) and `reins feedback ...` (its admin commands).
//! See docs/feedback.md for the round trip.
use anyhow::Context;
use reins_feedback::cli;
use reins_feedback::{Role, ServerConfig};
use std::path::PathBuf;

/// Serve the annotation app: people compare, rank, rate and critique model outputs.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// SQLite file (created if missing) or `postgres://user@host/db`.
    #[arg(long, default_value = "feedback.db")]
    pub db: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Public base URL for invite links (default: http://<addr>).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Mark session cookies Secure (when served behind HTTPS).
    #[arg(long)]
    pub secure_cookies: bool,
    /// Submissions per user per minute (0 = unlimited).
    #[arg(long, default_value_t = 120)]
    pub rate_limit: u32,
    /// Largest request body in MiB (item imports included).
    #[arg(long, default_value_t = 32)]
    pub max_body_mib: usize,
    /// Failed logins per account per minute (all addresses) before addresses that already
    /// failed for it must wait; 0 = unlimited.
    #[arg(long, default_value_t = 10)]
    pub login_failures_per_user: u32,
    /// Failed logins per client address per minute (all accounts); 0 = unlimited.
    #[arg(long, default_value_t = 30)]
    pub login_failures_per_address: u32,
    /// Behind a reverse proxy: the header that carries the client's address, e.g.
    /// X-Forwarded-For (its last entry is used). Only set this when the proxy sets it.
    #[arg(long)]
    pub client_ip_header: Option<String>,
    /// First-run bootstrap: create this admin when the database has none, with the password
    /// from REINS_ADMIN_PASSWORD; without an admin and without that variable, serve stops
    /// and says so.
    #[arg(long, default_value = "admin")]
    pub admin_user: String,
    /// OpenID Connect sign-in (off without it): the issuer URL, exactly as in its ID tokens.
    /// Needs --oidc-client-id and the client secret in REINS_OIDC_CLIENT_SECRET; register
    /// <base-url>/oidc/callback as the redirect URI at the issuer.
    #[arg(long)]
    pub oidc_issuer: Option<String>,
    /// The client id registered at the OpenID issuer.
    #[arg(long)]
    pub oidc_client_id: Option<String>,
    /// The login button says "Sign in with <NAME>" (default: the issuer's host).
    #[arg(long)]
    pub oidc_name: Option<String>,
    /// Email domains whose people get an annotator account at their first OpenID sign-in
    /// (comma-separated); others need an admin. Default: none.
    #[arg(long, value_delimiter = ',')]
    pub oidc_allowed_domains: Vec<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let base_url = args.base_url.clone().unwrap_or_else(|| format!("http://{}", args.addr));
    let opts = cli::ServeOptions {
        db: args.db,
        addr: args.addr,
        config: ServerConfig {
            secure_cookies: args.secure_cookies,
            rate_limit_per_minute: args.rate_limit,
            max_body_bytes: args.max_body_mib << 20,
            base_url,
            login_failures_per_user: args.login_failures_per_user,
            login_failures_per_address: args.login_failures_per_address,
            client_ip_header: args.client_ip_header,
            oidc: reins_feedback::oidc::OidcConfig::from_options(
                args.oidc_issuer,
                args.oidc_client_id,
                std::env::var(reins_feedback::oidc::SECRET_ENV).ok(),
                args.oidc_name,
                args.oidc_allowed_domains,
            )?,
        },
        admin_password: std::env::var("REINS_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty()),
        admin_user: args.admin_user,
    };
    cli::serve(opts).context("reins serve")
}

/// Administer the feedback database without the web UI.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum FeedbackCmd {
    /// Create a user with a password (read from REINS_PASSWORD).
    CreateUser {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        username: String,
        /// `admin` or `annotator`.
        #[arg(long, default_value = "annotator")]
        role: String,
    },
    /// Create a project from a JSON task config; prints its id.
    CreateProject {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        name: String,
        /// JSON file: {"guidelines", "overlap", "gold_rate", "questions": [...]}.
        #[arg(long)]
        config: PathBuf,
    },
    /// Import items from JSONL ({prompt, responses} or `reins generate` output).
    Import {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        /// Project id or name.
        #[arg(long)]
        project: String,
        file: PathBuf,
    },
    /// Print an invite link.
    Invite {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long, default_value = "annotator")]
        role: String,
        /// Project id or name the new account joins.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
    /// Disable a user: their sessions and tokens stop working and login is refused; their
    /// labels stay.
    DisableUser {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled user again.
    EnableUser {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        username: String,
    },
    /// Print a one-time link (valid for a day) with which the user sets a new password.
    ResetPassword {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
    /// Add an existing user to a project.
    AddMember {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        /// Project id or name.
        #[arg(long)]
        project: String,
        #[arg(long)]
        username: String,
    },
    /// Remove a member from a project: their unfinished tasks go back to the pool, their
    /// labels stay.
    RemoveMember {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        /// Project id or name.
        #[arg(long)]
        project: String,
        #[arg(long)]
        username: String,
    },
    /// Export labels as JSONL: preference, ranked, kto, ratings, spans, critiques, principles, raw,
    /// consensus (labels as reviewed: edits and corrections applied, rejected ones left out).
    Export {
        #[arg(long, default_value = "feedback.db")]
        db: String,
        #[arg(long)]
        project: String,
        /// Comma-separated formats.
        #[arg(long, default_value = "preference", value_delimiter = ',')]
        format: Vec<String>,
        /// Fraction of items held out for validation (by item).
        #[arg(long, default_value_t = 0.0)]
        split: f64,
        /// Output directory: <format>.train.jsonl and <format>.validation.jsonl.
        #[arg(long, default_value = "feedback-export")]
        out: PathBuf,
    },
}

fn role(s: &str) -> anyhow::Result<Role> {
    Ok(Role::parse(s)?)
}

pub fn run_feedback(cmd: FeedbackCmd) -> anyhow::Result<()> {
    match cmd {
        FeedbackCmd::CreateUser { db, username, role: r } => {
            let password = std::env::var("REINS_PASSWORD").context("set REINS_PASSWORD to the new user's password")?;
            cli::create_user(&db, &username, &password, role(&r)?)?;
            println!("created {r} `{username}`");
        }
        FeedbackCmd::CreateProject { db, name, config } => {
            let id = cli::create_project(&db, &name, &config)?;
            println!("{id}");
        }
        FeedbackCmd::Import { db, project, file } => {
            let report = cli::import(&db, &project, &file)?;
            for e in &report.errors {
                eprintln!("{}:{}: {}", file.display(), e.line, e.message);
            }
            println!(
                "imported {} items ({} already present, {} bad lines)",
                report.imported,
                report.duplicates,
                report.errors.len()
            );
        }
        FeedbackCmd::Invite { db, role: r, project, base_url } => {
            println!("{}", cli::invite(&db, role(&r)?, project.as_deref(), &base_url)?);
        }
        FeedbackCmd::DisableUser { db, username } => {
            cli::set_disabled(&db, &username, true)?;
            println!("disabled `{username}`");
        }
        FeedbackCmd::EnableUser { db, username } => {
            cli::set_disabled(&db, &username, false)?;
            println!("enabled `{username}`");
        }
        FeedbackCmd::ResetPassword { db, username, base_url } => {
            println!("{}", cli::reset_password(&db, &username, &base_url)?);
        }
        FeedbackCmd::AddMember { db, project, username } => {
            cli::add_member(&db, &project, &username)?;
            println!("added `{username}` to {project}");
        }
        FeedbackCmd::RemoveMember { db, project, username } => {
            let released = cli::remove_member(&db, &project, &username)?;
            println!("removed `{username}` from {project} ({released} unfinished tasks released)");
        }
        FeedbackCmd::Export { db, project, format, split, out } => {
            for (path, n) in cli::export(&db, &project, &format, split, &out)? {
                println!("{n:>7} records → {}", path.display());
            }
        }
    }
    Ok(())
}
