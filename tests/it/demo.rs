//! `mcp-healthd demo` as a new user meets it: from an empty directory, with no configuration
//! and no sample files, it shows healthy and failing services, and Ctrl-C leaves nothing behind
//! (no PostgreSQL process, no files, no demo database). With `--samples DIR` and no server
//! answering, it runs on a throwaway cluster that Ctrl-C stops and removes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::server_url;

/// One demo at a time: each binds the default metrics address (127.0.0.1:9464) if it looks
/// free, and two starting together race for it (the loser's daemon cannot listen and exits).
static ONE_DEMO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// Ctrl-C, then waits for the demo to exit: its status and what it wrote to stderr.
fn ctrl_c_and_wait(child: &mut Child) -> (std::process::ExitStatus, String) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status, stderr);
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line mentions `path` (a throwaway cluster lives under it).
fn processes_under(path: &Path) -> Vec<String> {
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

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .collect()
}

async fn demo_database_exists() -> bool {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url().with_database("postgres").expose())
        .await
        .unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'mcp_healthd_demo')")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_runs_from_an_empty_directory_and_ctrl_c_leaves_nothing_behind() {
    let _one = ONE_DEMO.lock().await;
    let cwd = tempfile::tempdir().unwrap();
    // The demo's temporary files go here (TMPDIR), so "nothing left" can be checked exactly.
    // World-traversable like /tmp: a throwaway cluster runs as the postgres user.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("demo.out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .arg("demo")
        // No configuration at all: no file, no MCP_HEALTHD_CONFIG; the server is the tests'
        // (where the built-in default URL would point on a fresh machine).
        .env_remove("MCP_HEALTHD_CONFIG")
        .env(
            "DATABASE_URL",
            server_url().with_database("mcp_health").expose(),
        )
        .env("TMPDIR", tmp.path())
        .current_dir(cwd.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = wait_for_up_and_down(&mut child, &out);
    assert!(
        text.contains("51 sample services"),
        "the built-in samples are served:\n{text}"
    );
    assert!(
        demo_database_exists().await,
        "the demo uses its own database"
    );

    let (status, stderr) = ctrl_c_and_wait(&mut child);
    assert!(status.success(), "demo exit {status}: {stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("demo stopped"), "{text}");
    assert_eq!(
        entries(cwd.path()),
        Vec::<String>::new(),
        "files left in the working directory"
    );
    assert_eq!(
        entries(tmp.path()),
        Vec::<String>::new(),
        "temporary files left behind"
    );
    assert_eq!(
        processes_under(tmp.path()),
        Vec::<String>::new(),
        "processes left behind"
    );
    assert!(
        !demo_database_exists().await,
        "the demo database was not dropped"
    );
}

#[test]
fn the_demo_runs_on_a_throwaway_cluster_and_leaves_nothing_behind() {
    let _one = ONE_DEMO.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("demo.out");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .args(["demo", "--samples", samples.to_str().unwrap()])
        // No database configured: nothing answers on port 1.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env_remove("MCP_HEALTHD_CONFIG")
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
    let mut words = line.split_whitespace();
    let pid: u32 = words.nth(3).unwrap().parse().unwrap();
    let data_dir = words.nth(1).unwrap().to_owned();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "postgres runs while the demo does"
    );
    assert!(
        text.contains("status: HTTP 500"),
        "a failing sample shows its error:\n{text}"
    );

    let (status, stderr) = ctrl_c_and_wait(&mut child);
    assert!(status.success(), "demo exit {status}: {stderr}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the throwaway postgres {pid} is still running"
    );
    assert!(!Path::new(&data_dir).exists(), "{data_dir} was not removed");
}
