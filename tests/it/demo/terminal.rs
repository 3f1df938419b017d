//! The demo on a terminal, driven in tmux at 80×24 as a new user would see it: after the first
//! redraw the banner and the summary line are on screen and no line is wider than the terminal
//! (wrapped lines joined back, `capture-pane -J`); Ctrl-C at the keyboard ends it within 2 s
//! with exit 0 (or 130), leaving no PostgreSQL process and no directory. No server answers, so
//! it runs on a throwaway cluster: the case where the server could get the Ctrl-C first.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{ONE_DEMO, STOP_WITHIN, demo_tmpdir, entries, processes_under};

/// A tmux server of this test's own (its own socket), killed when dropped, with everything in it.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", "demo"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Polls the screen until `done` holds for it.
fn wait_screen(tmux: &Tmux, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let screen = tmux.screen();
        if done(&screen) {
            return screen;
        }
        assert!(Instant::now() < deadline, "no {what} on screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shell line tmux runs: the demo with no configuration and no server, then its exit code
/// into `rc`. The shell runs a trap on SIGINT so Ctrl-C reaches only the demo's own handling.
fn demo_command(cwd: &Path, tmp: &Path, rc: &Path) -> String {
    format!(
        "trap : INT; cd {cwd}; env -u MCP_HEALTHD_CONFIG DATABASE_URL=postgres://postgres@127.0.0.1:1/nowhere \
         TMPDIR={tmp} {bin} demo; echo $? > {rc}.tmp && mv {rc}.tmp {rc}; sleep 600",
        cwd = cwd.display(),
        tmp = tmp.display(),
        bin = env!("CARGO_BIN_EXE_mcp-healthd"),
        rc = rc.display(),
    )
}

fn wait_exit_code(rc: &Path, since: Instant) -> (i32, Duration) {
    loop {
        if let Ok(text) = std::fs::read_to_string(rc) {
            return (text.trim().parse().unwrap(), since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After the first redraw: banner, summary and footer on screen, nothing wider than 80
/// columns; then, in time, a degraded service and a down one.
fn first_screen_fits(tmux: &Tmux) {
    let screen = wait_screen(tmux, "banner and summary", |s| {
        s.starts_with("mcp-healthd demo: 51 sample services")
            && s.lines()
                .any(|l| l.starts_with("51 services: ") && l.contains(" up, "))
            && s.lines().any(|l| l.ends_with("Ctrl-C to stop"))
    });
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines.len() <= 24, "{} lines:\n{screen}", lines.len());
    assert!(
        lines[1].starts_with("database mcp_healthd_demo_"),
        "{screen}"
    );
    let wide: Vec<&&str> = lines.iter().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "lines wider than 80 columns: {wide:#?}");
    // Every state shows in time, a slow service among them.
    wait_screen(tmux, "a degraded and a down service", |s| {
        s.contains(" degraded ") && s.contains(" down ")
    });
}

#[test]
fn at_80_by_24_the_demo_fits_the_screen_and_ctrl_c_stops_it_within_2_s() {
    let _one = ONE_DEMO.blocking_lock();
    let (cwd, tmp, out) = (
        tempfile::tempdir().unwrap(),
        demo_tmpdir(),
        tempfile::tempdir().unwrap(),
    );
    let rc = out.path().join("rc");
    // The cluster's directory (`TMPDIR/mcp-healthd-demo-*`): tmux's own command line names TMPDIR.
    let cluster = tmp.path().join("mcp-healthd-demo-");
    let tmux = Tmux {
        socket: format!("mcp-healthd-it-{}", std::process::id()),
    };
    let command = demo_command(cwd.path(), tmp.path(), &rc);
    let size = ["-x", "80", "-y", "24"];
    tmux.run(&[&["new-session", "-d", "-s", "demo"][..], &size, &[&command]].concat());

    first_screen_fits(&tmux);
    assert!(
        !processes_under(&cluster).is_empty(),
        "the throwaway cluster runs under TMPDIR"
    );

    let sent = Instant::now();
    tmux.run(&["send-keys", "-t", "demo", "C-c"]);
    let (code, took) = wait_exit_code(&rc, sent);
    eprintln!("Ctrl-C at 80×24 stopped the demo in {took:?} (exit {code})");
    assert!(matches!(code, 0 | 130), "exit {code}:\n{}", tmux.screen());
    assert!(took < STOP_WITHIN, "Ctrl-C took {took:?}");
    let after = tmux.screen();
    assert!(
        after.contains("stopping…") && after.contains("demo stopped"),
        "{after}"
    );
    let none = Vec::<String>::new();
    assert_eq!(processes_under(&cluster), none, "processes left behind");
    assert_eq!(entries(tmp.path()), none, "directories left behind");
    assert_eq!(
        entries(cwd.path()),
        none,
        "files left in the working directory"
    );
}
