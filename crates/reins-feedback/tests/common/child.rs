//! A real `reins serve` in a child process: the test binary re-runs itself with one test
//! selected and `REINS_CHILD_DB` set; that test calls [`serve_from_env`], which serves the
//! database through `cli::serve` (the binary's own code path: runtime, signals, start-up
//! lines). The parent reads the child's output line by line and its memory from /proc.
use reins_feedback::cli::{self, ServeOptions};
use reins_feedback::ServerConfig;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const CHILD_DB: &str = "REINS_CHILD_DB";
/// Optional: the `--base-url` the child serves with.
pub const CHILD_BASE_URL: &str = "REINS_CHILD_BASE_URL";

/// Whether this process is a child started by [`spawn`]. The tests that start children
/// return at once there, so a child never starts one of its own.
pub fn in_child() -> bool {
    std::env::var(CHILD_DB).is_ok()
}

/// Runs in the child: serves `$REINS_CHILD_DB` on a free loopback port, written to
/// `<db>.addr` first. Returns false when this process is not a child.
pub fn serve_from_env() -> bool {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return false;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let file = addr_file(&db);
    std::fs::write(format!("{file}.tmp"), &addr).unwrap();
    std::fs::rename(format!("{file}.tmp"), &file).unwrap();
    let base_url = std::env::var(CHILD_BASE_URL).unwrap_or_else(|_| format!("http://{addr}"));
    let opts = ServeOptions {
        db,
        addr,
        config: ServerConfig { base_url, ..Default::default() },
        admin_password: Some(super::ADMIN_PASSWORD.into()),
        admin_user: "admin".into(),
    };
    if let Err(e) = cli::serve(opts) {
        println!("serve failed: {e}");
        std::process::exit(3);
    }
    println!("serve returned");
    true
}

fn addr_file(db: &str) -> String {
    // A postgres URL is no file name: key the address file by a hash of it in the temp dir.
    if db.contains("://") {
        let h = db.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        format!("{}/reins-child-{h:x}.addr", std::env::temp_dir().display())
    } else {
        format!("{db}.addr")
    }
}

pub struct ChildServer {
    pub process: std::process::Child,
    pub addr: String,
    lines: mpsc::Receiver<String>,
    /// Every line read so far (stdout and stderr).
    pub seen: Vec<String>,
}

/// Starts the test `test` of this binary as a child server on `db`; returns once the
/// server answers on its address.
pub async fn spawn(test: &str, db: &str, env: &[(&str, &str)]) -> ChildServer {
    let file = addr_file(db);
    let _ = std::fs::remove_file(&file);
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(CHILD_DB, db)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child server");
    let (tx, lines) = mpsc::channel();
    for out in [
        Box::new(process.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(process.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let start = Instant::now();
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&file) {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "child server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = std::fs::remove_file(&file);
    // The address is written before the server binds: wait until it answers.
    loop {
        if super::http(&addr, "GET", "/api/openapi.json", &[], "").await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = process.try_wait() {
            panic!("child server exited with {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "child server did not answer on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ChildServer { process, addr, lines, seen: Vec::new() }
}

impl ChildServer {
    /// Reads output lines until one contains `needle`; None when the child's output ended
    /// first (it exited). The 60 s bound only keeps a broken run from hanging.
    pub fn wait_for_line(&mut self, needle: &str) -> Option<String> {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Collects the remaining output (after the child exited).
    pub fn drain(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// `VmRSS` / `VmHWM` (peak) of the child in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([&format!("-{signal}"), &self.process.id().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
