//! The first minutes with the tool, and the common mistakes: each connection error is one
//! sentence that says where, what and where the URL came from, with the right exit code; `run`
//! says it is waiting, and gives up at once (78) when only the configuration can help; `check
//! --json` gives the HTTP status of a failed check; `status` says when no daemon seems to run;
//! `jobs run --help` lists the jobs; `registry import --dry-run` writes nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::daemon::Daemon;
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, healthd, server_url, text};
use crate::prober::register;

/// A loopback PostgreSQL peer that asks for a password and rejects it (SQLSTATE 28P01), as a
/// server with password authentication does; the shared test server trusts loopback.
async fn password_rejecting_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                loop {
                    // SSLRequest or StartupMessage: length, then a code.
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if body[..4] == [0x04, 0xd2, 0x16, 0x2f] {
                        let _ = s.write_all(b"N").await; // no TLS here
                        continue;
                    }
                    break;
                }
                // AuthenticationCleartextPassword, then read the PasswordMessage.
                let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                let mut head = [0u8; 5];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize - 4;
                let mut skip = vec![0u8; n];
                let _ = s.read_exact(&mut skip).await;
                let mut fields = Vec::new();
                for (tag, value) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "28P01"),
                    (b'M', "password authentication failed for user \"monitor\""),
                    (b'L', "334"),
                ] {
                    fields.push(tag);
                    fields.extend_from_slice(value.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut msg = vec![b'E'];
                msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                msg.extend_from_slice(&fields);
                let _ = s.write_all(&msg).await;
            });
        }
    });
    port
}

async fn closed_port() -> fleet::ClosedPort {
    fleet::closed_port().await.unwrap()
}

#[tokio::test]
async fn a_refused_connection_is_one_sentence_naming_where_the_url_came_from() {
    let closed = closed_port().await;
    let port = closed.port;
    let url = format!("postgres://postgres@127.0.0.1:{port}/mcp_health");
    let out = healthd(&["status"], &[("DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "mcp-healthd: cannot connect to PostgreSQL at 127.0.0.1:{port} as postgres \
             (connection refused — is it running?); the URL is from DATABASE_URL"
        )
    );
    // From the file this time, through `migrate`, which creates the database: same sentence.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, format!("[database]\nurl = \"{url}\"\n")).unwrap();
    let out = healthd(&["-c", file.to_str().unwrap(), "migrate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "mcp-healthd: cannot connect to PostgreSQL at 127.0.0.1:{port} as postgres \
             (connection refused — is it running?); the URL is from database.url in {}",
            file.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_password_ends_run_at_once_with_78() {
    let port = password_rejecting_server().await;
    let url = format!("postgres://monitor:wrong@127.0.0.1:{port}/mcp_health");
    let expected = "mcp-healthd: password rejected for user monitor; the URL is from DATABASE_URL";
    let out = healthd(&["status"], &[("DATABASE_URL", &url)]);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(text(&out.stderr).trim_end(), expected);

    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        healthd(&["run"], &[("DATABASE_URL", &url), ("NOTIFY_SOCKET", "")])
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(expected),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("wrong"),
        "the password is never shown"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn a_missing_database_without_auto_migrate_ends_run_with_78() {
    let name = TestDb::unused_name();
    let url = server_url().with_database(&name);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[database]\nauto_migrate = false\n").unwrap();
    let out = healthd(
        &["-c", file.to_str().unwrap(), "run"],
        &[("DATABASE_URL", url.expose())],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "database {name} does not exist — run mcp-healthd migrate; the URL is from DATABASE_URL"
        )),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_it_is_waiting_for_the_database_at_each_attempt() {
    let closed = closed_port().await;
    let port = closed.port;
    let url = mcp_healthd::config::DatabaseUrl::parse(&format!(
        "postgres://postgres@127.0.0.1:{port}/mcp_health"
    ))
    .unwrap();
    let daemon = Daemon::spawn(
        &url,
        "[log]\nformat = \"json\"\n[http]\nlisten = \"\"\n",
        &[],
    );
    for attempt in [1, 2] {
        daemon.wait_for(
            |e| {
                e["event"] == "db_waiting"
                    && e["message"].as_str().is_some_and(|m| {
                        m.starts_with(&format!(
                            "waiting for the database (attempt {attempt}, next try in "
                        ))
                    })
            },
            Duration::from_secs(15),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_json_gives_the_http_status_of_a_failed_check() {
    let db = TestDb::migrated().await;
    let failing = fleet::spawn(Behaviour::Status(500)).await;
    register(&db, "broken", failing.port.into()).await;
    let out = healthd(&["check", "--json"], &[("DATABASE_URL", db.url.expose())]);
    assert_eq!(out.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["status"], 500, "{rows}");
    assert_eq!(rows[0]["error_kind"], "status", "{rows}");
}

#[tokio::test]
async fn status_says_when_no_daemon_seems_to_run() {
    let db = TestDb::migrated().await;
    register(&db, "old", 1).await;
    sqlx::query(
        "UPDATE service_health_status
            SET last_health_check = '2026-01-02 03:04:05+00', is_healthy = true,
                check_interval_ms = 30000",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let out = healthd(&["status"], &[("DATABASE_URL", db.url.expose())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "no daemon appears to be running: every status is stale \
             (the newest check was at 2026-01-02 03:04:05 UTC)"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn jobs_run_help_lists_the_jobs_and_a_dry_run_writes_nothing() {
    let help = healthd(&["jobs", "run", "--help"], &[]);
    for job in mcp_healthd::jobs::JobName::ALL {
        assert!(
            text(&help.stdout).contains(job.as_str()),
            "{job:?} missing from:\n{}",
            text(&help.stdout)
        );
    }

    let db = TestDb::migrated().await;
    register(&db, "not_in_dir", 2).await;
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry");
    let count = async || -> (i64, i64) {
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE is_available) FROM service_registry",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let before = count().await;
    let out = healthd(
        &[
            "registry",
            "import",
            samples.to_str().unwrap(),
            "--prune",
            "--dry-run",
        ],
        &[("DATABASE_URL", db.url.expose())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("dry run, nothing written: would import"),
        "{said}"
    );
    assert!(said.contains("made unavailable: not_in_dir"), "{said}");
    assert_eq!(count().await, before, "a dry run changed the registry");
}

/// Exit code 2 is clap's, for a command line it cannot parse (the README lists it).
#[test]
fn a_usage_error_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"))
        .arg("--no-such-flag")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
