//! `mcp-healthd demo` as a new user meets it: from an empty directory, with no configuration
//! and no sample files, it shows healthy and failing services, and Ctrl-C leaves nothing behind
//! (no PostgreSQL process, no files, no demo database) within 2 s. Two demos share a server,
//! each in a database of its own. With `--samples DIR` and no server answering, it runs on a
//! throwaway cluster that a double Ctrl-C still stops and removes. On a terminal
//! (`terminal`): the live screen fits 80×24.

mod terminal;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::server_url;

/// One demo test at a time: each binds the default metrics address (127.0.0.1:9464) if it looks
/// free, and two starting together race for it (the loser's daemon cannot listen and exits).
static ONE_DEMO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long Ctrl-C may take to end the demo.
const STOP_WITHIN: Duration = Duration::from_secs(2);

/// Waits until `child`'s output (in `out`) shows at least one service up and one down.
fn wait_for_up_and_down(child: &mut Child, out: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        // The summary line under each table: "N services: U up, D down, ...".
        let shown = text.lines().any(|l| {
            let count = |what: &str| {
                l.split(", ")
                    .find_map(|part| {
                        part.rsplit(": ")
                            .next()?
                            .strip_suffix(what)?
                            .trim()
                            .parse::<u32>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            l.contains(" services: ") && count(" up") > 0 && count(" down") > 0
        });
        if shown {
            return text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the demo exited:\n{text}"
        );
        assert!(
            Instant::now() < deadline,
            "no healthy and failing services shown:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn interrupt(child: &Child) {
    // SAFETY: a signal to our own child (ESRCH if it has already exited and been reaped).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
}

/// Waits for the demo to exit: its status, how long it took, and what it wrote to stderr.
fn wait_exit(child: &mut Child, since: Instant) -> (ExitStatus, Duration, String) {
    let deadline = since + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let took = since.elapsed();
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status, took, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How long a demo on the shared server may take: its stop includes `DROP DATABASE`, which
/// waits for a checkpoint of a server the other tests keep busy (seen: 0.15-0.5 s).
const SERVER_STOP_WITHIN: Duration = Duration::from_secs(10);

/// Ctrl-C, then waits for the demo (on the shared server) to exit, which must be successful.
fn ctrl_c_and_wait(child: &mut Child) -> Duration {
    let sent = Instant::now();
    interrupt(child);
    let (status, took, stderr) = wait_exit(child, sent);
    assert!(status.success(), "demo exit {status}: {stderr}");
    assert!(
        took < SERVER_STOP_WITHIN,
        "Ctrl-C took {took:?} to stop the demo"
    );
    took
}

/// Processes whose command line mentions `path` (a throwaway cluster lives under it).
pub(crate) fn processes_under(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

pub(crate) fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .collect()
}

/// A directory for the demo's temporary files (its TMPDIR), so "nothing left" can be checked
/// exactly. World-traversable like /tmp: a throwaway cluster runs as the postgres user.
pub(crate) fn demo_tmpdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    tmp
}

/// The demo's database, from its first line: `database: NAME on the configured server ...`.
fn database_name(text: &str) -> String {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("database: "))
        .unwrap_or_else(|| panic!("no database line:\n{text}"));
    line.split_whitespace().next().unwrap().to_owned()
}

async fn database_exists(name: &str) -> bool {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url().with_database("postgres").expose())
        .await
        .unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// The demo with no configuration at all (no file, no MCP_HEALTHD_CONFIG), on the tests' server
/// (where the built-in default URL would point on a fresh machine), its output in `out`.
fn demo_on_the_server(cwd: &Path, tmp: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .arg("demo")
        .env_remove("MCP_HEALTHD_CONFIG")
        .env(
            "DATABASE_URL",
            server_url().with_database("mcp_health").expose(),
        )
        .env("TMPDIR", tmp)
        .current_dir(cwd)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn two_demos_share_a_server_from_empty_directories_and_ctrl_c_leaves_nothing_behind() {
    let _one = ONE_DEMO.lock().await;
    let (cwd, tmp, outs) = (
        tempfile::tempdir().unwrap(),
        demo_tmpdir(),
        tempfile::tempdir().unwrap(),
    );
    let out = [outs.path().join("a.out"), outs.path().join("b.out")];
    let mut first = demo_on_the_server(cwd.path(), tmp.path(), &out[0]);
    let text = wait_for_up_and_down(&mut first, &out[0]);
    assert!(
        text.contains("51 sample services"),
        "the built-in samples are served:\n{text}"
    );
    let mut second = demo_on_the_server(cwd.path(), tmp.path(), &out[1]);
    let names = [
        database_name(&text),
        database_name(&wait_for_up_and_down(&mut second, &out[1])),
    ];
    assert_ne!(names[0], names[1], "each demo has a database of its own");
    for name in &names {
        assert!(database_exists(name).await, "{name} is not there");
    }

    let took = ctrl_c_and_wait(&mut first);
    eprintln!("Ctrl-C stopped the first demo in {took:?}");
    assert!(
        !database_exists(&names[0]).await,
        "{} was not dropped",
        names[0]
    );
    assert!(
        database_exists(&names[1]).await,
        "the second demo's database was dropped too"
    );
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second demo stopped too"
    );
    let took = ctrl_c_and_wait(&mut second);
    eprintln!("Ctrl-C stopped the second demo in {took:?}");
    assert!(
        !database_exists(&names[1]).await,
        "{} was not dropped",
        names[1]
    );

    for out in &out {
        let text = std::fs::read_to_string(out).unwrap();
        assert!(
            text.contains("stopping…\n") && text.contains("demo stopped"),
            "{text}"
        );
    }
    let none = Vec::<String>::new();
    assert_eq!(
        entries(cwd.path()),
        none,
        "files left in the working directory"
    );
    assert_eq!(entries(tmp.path()), none, "temporary files left behind");
    assert_eq!(processes_under(tmp.path()), none, "processes left behind");
}

#[test]
fn a_second_ctrl_c_still_stops_and_removes_the_throwaway_cluster() {
    let _one = ONE_DEMO.blocking_lock();
    let (dir, tmp, out_dir) = (
        tempfile::tempdir().unwrap(),
        demo_tmpdir(),
        tempfile::tempdir().unwrap(),
    );
    let out = out_dir.path().join("demo.out");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .args(["demo", "--samples", samples.to_str().unwrap()])
        // No database configured: nothing answers on port 1.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env_remove("MCP_HEALTHD_CONFIG")
        .env("TMPDIR", tmp.path())
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = wait_for_up_and_down(&mut child, &out);
    let line = text
        .lines()
        .find(|l| l.starts_with("throwaway PostgreSQL pid "))
        .expect("throwaway cluster line");
    let pid: u32 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "postgres runs while the demo does"
    );
    assert!(
        text.contains("status: HTTP 500"),
        "a failing sample shows its error:\n{text}"
    );

    // The second Ctrl-C as soon as the first is acknowledged, while the daemon is stopping.
    let sent = Instant::now();
    interrupt(&child);
    while !std::fs::read_to_string(&out).unwrap().contains("stopping…") {
        assert!(sent.elapsed() < STOP_WITHIN, "no `stopping…` at once");
        std::thread::sleep(Duration::from_millis(2));
    }
    interrupt(&child);
    let (status, took, stderr) = wait_exit(&mut child, sent);
    let text = std::fs::read_to_string(&out).unwrap();
    eprintln!("two Ctrl-C stopped the demo in {took:?} ({status})");
    assert!(
        matches!(status.code(), Some(0 | 130)),
        "demo exit {status}: {stderr}\n{text}"
    );
    assert!(took < STOP_WITHIN, "the demo took {took:?} to stop");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the throwaway postgres {pid} is still running"
    );
    let none = Vec::<String>::new();
    assert_eq!(
        entries(tmp.path()),
        none,
        "the cluster's directory was not removed"
    );
    assert_eq!(processes_under(tmp.path()), none, "processes left behind");
}
