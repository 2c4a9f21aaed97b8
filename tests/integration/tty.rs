//! A real terminal for the tests: a tmux server of the test's own, whose screen is read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    pub fn new(sock: &Path) -> Tmux {
        Tmux {
            sock: sock.to_owned(),
        }
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock);
        c
    }

    fn ok(&self, args: &[&str]) {
        let out = self.tmux().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `command` (a shell line) in a terminal of `cols` x `rows`. The pane stays after the
    /// command ends, so that its last words can be read.
    pub fn start(&self, cols: u16, rows: u16, command: &str) {
        self.ok(&[
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &format!("{command}; sleep 600"),
        ]);
    }

    pub fn screen(&self) -> String {
        let out = self.tmux().args(["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits up to 20 s for `text` on the screen.
    pub fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared on:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `line` and Enter.
    pub fn keys(&self, line: &str) {
        self.ok(&["send-keys", "-l", line]);
        self.ok(&["send-keys", "Enter"]);
    }

    /// A key by tmux's name for it: "C-d", "C-c".
    pub fn key(&self, k: &str) {
        self.ok(&["send-keys", k]);
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        self.ok(&[
            "resize-window",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
        let _ = std::fs::remove_file(&self.sock);
    }
}
