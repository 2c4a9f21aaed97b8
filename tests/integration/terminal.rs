//! Terminal mode as a user meets it: through chitin-recvtty on a console socket (as runc's users
//! meet it through recvtty) and through `run` in the foreground, in a real terminal (tmux): the
//! window size reaches the container and follows resizes, the EOF character ends the shell, and a
//! piped stdin's end reaches the container as EOF.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::clients::{need, wait_until};
use crate::harness::{TestResult, skip};
use crate::support::{Ctx, bin};
use crate::tty::Tmux;

/// The helper: cargo's, or CHITIN_RECVTTY where the tests run elsewhere.
pub fn recvtty() -> Result<PathBuf, crate::harness::Outcome> {
    let p = std::env::var("CHITIN_RECVTTY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_chitin-recvtty")));
    if p.exists() {
        Ok(p)
    } else {
        skip(format!("{} is not here", p.display()))
    }
}

fn wait_for_socket(p: &Path) {
    wait_until(10, "the console socket", || p.exists());
}

fn chitin_line(ctx: &Ctx) -> String {
    format!("{} --root {}", bin(), ctx.root.display())
}

/// Feeds `input` to `child` once `prompt` is in its output (a user types at the prompt: a shell
/// switches its terminal's modes before it prompts, and an EOF character sent across that switch
/// would be lost), closes its stdin, and waits up to 10 s for it to exit (it would hang if the EOF
/// were lost). Its exit status and output, without carriage returns.
fn converse(
    mut child: std::process::Child,
    prompt: &str,
    input: &[u8],
) -> (std::process::ExitStatus, String) {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = Vec::new();
    let mut stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        while let Ok(chunk) = rx.try_recv() {
            text.extend(chunk);
        }
        if stdin.is_some() && String::from_utf8_lossy(&text).contains(prompt) {
            let mut s = stdin.take().unwrap();
            s.write_all(input).unwrap();
        }
        if let Some(st) = child.try_wait().unwrap() {
            while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                text.extend(chunk);
            }
            return (st, String::from_utf8_lossy(&text).replace('\r', ""));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running 10 s after its stdin ended; its output: {:?}",
                String::from_utf8_lossy(&text)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// After a resize, the shell sees the old size ($BEFORE) until the SIGWINCH has gone round.
const SIZE_AFTER_RESIZE: &str =
    "clear; while [ \"$(stty size)\" = \"$BEFORE\" ]; do sleep 0.1; done; stty size";

pub fn recvtty_create_and_exec() -> TestResult {
    let ctx = Ctx::new("recvtty")?;
    need(&["tmux"], "tmux")?;
    let recvtty = recvtty()?;
    let mut b = ctx.bundle("");
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["args"] = serde_json::json!(["sh"]);
    let id = ctx.id();
    let sock = ctx.base.join("console.sock");
    let term = Tmux::new(&ctx.base.join("tmux"));
    term.start(
        100,
        30,
        &format!(
            "{} {}; echo recvtty-exit=$?",
            recvtty.display(),
            sock.display()
        ),
    );
    wait_for_socket(&sock);
    let (code, err) = ctx.create(&b, &id, &["--console-socket".as_ref(), sock.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ctx.chitin(&["start", &id]).status.code(), Some(0));
    term.wait_for("/ #");
    term.keys("tty; stty size");
    term.wait_for("30 100");
    assert!(term.screen().contains("/dev/pts/0\n"), "{}", term.screen());
    term.resize(80, 24);
    term.keys(&SIZE_AFTER_RESIZE.replace("$BEFORE", "30 100"));
    term.wait_for("24 80");

    // exec -t with its own console socket and recvtty, in a terminal of another size.
    let sock2 = ctx.base.join("exec.sock");
    let term2 = Tmux::new(&ctx.base.join("tmux-exec"));
    term2.start(
        60,
        20,
        &format!(
            "{} {}; echo recvtty-exit=$?",
            recvtty.display(),
            sock2.display()
        ),
    );
    wait_for_socket(&sock2);
    let out = ctx
        .cmd()
        .args(["exec", "-t", "--console-socket"])
        .arg(&sock2)
        .args([&id, "sh", "-c", "tty; stty size; exit 3"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    term2.wait_for("recvtty-exit=0");
    let screen = term2.screen();
    assert!(screen.contains("/dev/pts/1\n20 60\n"), "{screen}");

    // The EOF character at the prompt ends the shell, so the container; recvtty then exits.
    term.key("C-d");
    term.wait_for("recvtty-exit=0");
    wait_until(10, "the container to stop", || {
        ctx.state(&id)["status"] == "stopped"
    });
    Ok(())
}

pub fn run_in_a_terminal() -> TestResult {
    let ctx = Ctx::new("runtty")?;
    need(&["tmux"], "tmux")?;
    let mut b = ctx.bundle("");
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["args"] = serde_json::json!(["sh"]);
    b.save();
    let id = ctx.id();
    let term = Tmux::new(&ctx.base.join("tmux"));
    term.start(
        90,
        25,
        &format!(
            "{} run -b {} {id}; echo run-exit=$?",
            chitin_line(&ctx),
            b.dir.display()
        ),
    );
    term.wait_for("/ #");
    term.keys("stty size");
    term.wait_for("25 90");
    term.resize(70, 21);
    term.keys(&SIZE_AFTER_RESIZE.replace("$BEFORE", "25 90"));
    term.wait_for("21 70");
    // ^C goes to the container's foreground job, not to chitin.
    term.keys("sleep 100");
    std::thread::sleep(std::time::Duration::from_millis(300));
    term.key("C-c");
    term.keys("echo after-$((3*4))");
    term.wait_for("after-12");
    term.keys("exit 6");
    term.wait_for("run-exit=6");
    Ok(())
}

/// A stdin that is not a terminal: its lines reach the container's shell, and its end ends the
/// shell, for recvtty and for `run`.
pub fn piped_stdin_ends_with_eof() -> TestResult {
    let ctx = Ctx::new("ttyeof")?;
    let recvtty = recvtty()?;
    let mut b = ctx.bundle("");
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["args"] = serde_json::json!(["sh"]);
    b.save();

    let id = ctx.id();
    let sock = ctx.base.join("console.sock");
    let helper = Command::new(&recvtty)
        .arg(&sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_socket(&sock);
    let (code, err) = ctx.create(&b, &id, &["--console-socket".as_ref(), sock.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ctx.chitin(&["start", &id]).status.code(), Some(0));
    let (status, text) = converse(helper, "/ # ", b"echo piped-$((6*7))\n");
    assert!(status.success());
    assert!(text.contains("piped-42\n"), "{text}");
    wait_until(10, "the container to stop", || {
        ctx.state(&id)["status"] == "stopped"
    });

    // `run`, with cat reading the terminal in canonical mode: a partial last line needs one EOF
    // character to end it and a second to end the input.
    b.config["process"]["args"] = serde_json::json!(["cat"]);
    b.save();
    let id = ctx.id();
    let run = ctx
        .cmd()
        .args(["run", "-b"])
        .arg(&b.dir)
        .arg(&id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, text) = converse(run, "", b"first line\nno newline");
    assert_eq!(status.code(), Some(0), "{text}");
    // The terminal echoes the input, and cat writes it back.
    assert_eq!(text.matches("first line\n").count(), 2, "{text}");
    assert!(text.contains("no newline"), "{text}");
    Ok(())
}
