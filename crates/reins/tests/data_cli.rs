//! `reins data ...` as a user runs it: outputs never replace inputs, pipes and `-`, a closed
//! stdout, and a conversion that converts nothing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const PAIRS: &str = r#"{"prompt": "p1", "chosen": " a", "rejected": " b"}
{"prompt": "p2", "chosen": " c", "rejected": " d"}
{"prompt": "p3", "chosen": " e", "rejected": " f"}
{"prompt": "p4", "chosen": " g", "rejected": " h"}
"#;

fn reins(dir: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_reins")).args(args).current_dir(dir).output()?)
}

/// Run with `stdin` piped in.
fn reins_with_stdin(dir: &Path, args: &[&str], stdin: &[u8]) -> Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut pipe = child.stdin.take().ok_or("no stdin")?;
    let data = stdin.to_vec();
    // A writer thread, so a child that writes before reading everything cannot deadlock us.
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output()?;
    match writer.join().map_err(|_| "writer panicked")? {
        // A command that fails before reading its input closes the pipe early.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(out),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn split_never_writes_over_its_input() -> Result {
    let dir = tempfile::tempdir()?;
    // The name `reins feedback export` gives its files.
    std::fs::write(dir.path().join("pairs.train.jsonl"), PAIRS)?;
    let out = reins(dir.path(), &["data", "split", "pairs.train.jsonl", "--test-fraction", "0.25"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("pairs.train.jsonl"))?, PAIRS, "the input was overwritten");
    let lines = |name: &str| std::fs::read_to_string(dir.path().join(name)).map(|s| s.lines().count());
    assert_eq!((lines("pairs.train.train.jsonl")?, lines("pairs.train.test.jsonl")?), (3, 1));

    // Again: the outputs exist now.
    let out = reins(dir.path(), &["data", "split", "pairs.train.jsonl"])?;
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(lines("pairs.train.test.jsonl")?, 1, "a refused run changed an output");
    let out = reins(dir.path(), &["data", "split", "pairs.train.jsonl", "--test-fraction", "0.5", "--force"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines("pairs.train.test.jsonl")?, 2);

    // Named explicitly, the input is still refused, even with --force.
    for args in [
        &["data", "split", "pairs.train.jsonl", "--train", "pairs.train.jsonl", "--test", "t.jsonl", "--force"][..],
        &["data", "split", "./pairs.train.jsonl", "--train", "x.jsonl", "--test", "pairs.train.jsonl", "--force"],
        &["data", "split", "pairs.train.jsonl", "--train", "x.jsonl", "--test", "x.jsonl"],
    ] {
        let out = reins(dir.path(), args)?;
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(std::fs::read_to_string(dir.path().join("pairs.train.jsonl"))?, PAIRS, "{args:?}");
    }
    Ok(())
}

#[test]
fn convert_never_writes_over_its_input_and_asks_for_force() -> Result {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("pairs.jsonl"), PAIRS)?;
    let out = reins(dir.path(), &["data", "convert", "pairs.jsonl", "pairs.jsonl", "--to", "sft", "--force"])?;
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("is the input file"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("pairs.jsonl"))?, PAIRS);

    std::fs::write(dir.path().join("sft.jsonl"), "keep me\n")?;
    let out = reins(dir.path(), &["data", "convert", "pairs.jsonl", "sft.jsonl", "--to", "sft"])?;
    assert!(!out.status.success() && text(&out.stderr).contains("--force"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("sft.jsonl"))?, "keep me\n");
    let out = reins(dir.path(), &["data", "convert", "pairs.jsonl", "sft.jsonl", "--to", "sft", "--force"])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("sft.jsonl"))?.lines().count(), 4);
    Ok(())
}

#[test]
fn a_pipe_is_read_from_its_first_byte() -> Result {
    let dir = tempfile::tempdir()?;
    // `cat f | reins data inspect /dev/stdin`, and `-`.
    for path in ["/dev/stdin", "-"] {
        let out = reins_with_stdin(dir.path(), &["data", "inspect", path], PAIRS.as_bytes())?;
        let shown = text(&out.stdout);
        assert!(out.status.success(), "{path}: {}", text(&out.stderr));
        assert!(shown.contains("4 rows, 4 read, 4 converted"), "{path}: {shown}");
    }
    // Gzip through a pipe, converted to stdout.
    let gz = gzip(PAIRS.as_bytes());
    let out = reins_with_stdin(dir.path(), &["data", "convert", "-", "-", "--to", "sft"], &gz)?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 4, "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("wrote 4 records to stdout"), "{}", text(&out.stderr));
    // The split of stdin needs named outputs; one may be stdout.
    let out = reins_with_stdin(dir.path(), &["data", "split", "-"], PAIRS.as_bytes())?;
    assert!(!out.status.success() && text(&out.stderr).contains("--train and --test"), "{}", text(&out.stderr));
    let args = ["data", "split", "-", "--train", "-", "--test", "test.jsonl", "--test-fraction", "0.25"];
    let out = reins_with_stdin(dir.path(), &args, PAIRS.as_bytes())?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    Ok(())
}

/// A gzip stream of `data` made by the system's `gzip`, so the test needs no gzip crate.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the `gzip` command");
    child.stdin.take().expect("stdin").write_all(data).expect("write to gzip");
    child.wait_with_output().expect("gzip").stdout
}

#[cfg(unix)]
#[test]
fn a_fifo_is_opened_once() -> Result {
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("pairs.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success(), "mkfifo failed");
    let child = Command::new(env!("CARGO_BIN_EXE_reins"))
        .args(["data", "inspect", "pairs.fifo"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Opening blocks until reins opens the FIFO for reading.
    std::fs::OpenOptions::new().write(true).open(&fifo)?.write_all(PAIRS.as_bytes())?;
    // A reader that reopens the FIFO would wait for a second writer forever: be that writer
    // (an empty one) while reins is still running, so the test ends either way.
    let waiter = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::os::unix::fs::OpenOptionsExt;
            let mut reopened = 0;
            while !fifo.with_extension("done").exists() {
                // O_NONBLOCK: succeeds only while some process has the FIFO open for reading.
                let w = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
                reopened += usize::from(w.is_ok());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            reopened
        }
    });
    let out = child.wait_with_output()?;
    std::fs::write(fifo.with_extension("done"), "")?;
    waiter.join().map_err(|_| "waiter panicked")?;
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("4 rows, 4 read, 4 converted"), "{shown}");
    Ok(())
}

/// A pipe whose reading end is already closed: every write to it fails.
fn closed_pipe() -> Result<Stdio> {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn()?;
    let write_end = reader.stdin.take().ok_or("no pipe")?;
    reader.wait()?;
    Ok(Stdio::from(write_end))
}

#[test]
fn a_closed_stdout_ends_quietly() -> Result {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("pairs.jsonl"), PAIRS)?;
    // `reins data inspect F | head -1`, and the like.
    for args in [
        &["data", "inspect", "pairs.jsonl"][..],
        &["data", "inspect", "pairs.jsonl", "--json"],
        &["data", "convert", "pairs.jsonl", "-", "--to", "sft"],
        &["--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_reins"))
            .args(args)
            .current_dir(dir.path())
            .stdout(closed_pipe()?)
            .stderr(Stdio::piped())
            .output()?;
        let err = text(&out.stderr);
        assert!(!err.contains("panicked") && out.status.code() != Some(101), "{args:?}: {:?} {err}", out.status);
    }
    Ok(())
}

#[test]
fn converting_nothing_is_an_error_and_writes_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("sft.jsonl"), "{\"prompt\": \"q\", \"completion\": \" a\"}\n")?;
    let out = reins(dir.path(), &["data", "convert", "sft.jsonl", "pairs.jsonl", "--to", "preference"])?;
    let err = text(&out.stderr);
    assert!(!out.status.success(), "exit 0 after converting nothing: {err}");
    assert!(err.contains("nothing was converted") && err.contains("prompt_completion has no pair"), "{err}");
    assert!(!dir.path().join("pairs.jsonl").exists(), "an empty output was left behind");
    Ok(())
}
