//! `config check` and configuration loading: one fixture per rejected file, each asserted
//! against its message, exit 78, and the database password never printed.

use std::path::{Path, PathBuf};

use mcp_healthd::config::{Config, ConfigError};

use crate::helpers::{healthd, text};

const PASSWORD: &str = "hunter2-secret";

fn fixtures() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invalid-")
        })
        .map(|p| {
            let body = std::fs::read_to_string(&p).unwrap();
            let expect = body
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} lacks a '# expect: ' first line", p.display()))
                .to_owned();
            (p, expect)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 20, "fixtures went missing: {}", out.len());
    out
}

#[test]
fn every_invalid_fixture_is_rejected_with_its_message() {
    for (path, expect) in fixtures() {
        let err = Config::load(Some(&path), None).expect_err(&path.display().to_string());
        let msg = err.to_string();
        assert!(
            msg.contains(&expect),
            "{}:\n  want: {expect}\n  got:  {msg}",
            path.display()
        );
        assert!(
            !msg.contains(PASSWORD),
            "{} leaks the password: {msg}",
            path.display()
        );
    }
}

#[test]
fn config_check_exits_78_naming_the_key_and_never_prints_the_password() {
    for (path, expect) in fixtures() {
        let out = healthd(&["-c", path.to_str().unwrap(), "config", "check"], &[]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(78), "{}: {stderr}", path.display());
        assert!(stderr.contains(&expect), "{}: {stderr}", path.display());
        assert!(
            !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
            "{}",
            path.display()
        );
    }
}

#[test]
fn all_problems_of_a_file_are_reported_together() {
    let err = Config::from_toml(
        "[probe]\ninterval = \"soon\"\nconcurrency = 0\n[log]\nformat = \"xml\"\n",
        "t.toml",
        None,
    )
    .unwrap_err();
    let ConfigError::Invalid { errors, .. } = &err else {
        panic!("{err}")
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["probe.interval", "probe.concurrency", "log.format"]);
}

/// A file with one of every kind of problem: a wrong type, unknown keys in two sections, a bad
/// duration, an out-of-range integer and a `log.level` of `level_len` characters.
fn many_errors(level_len: usize) -> String {
    format!(
        "[database]\nmax_connections = \"eight\"\ncolour = \"blue\"\n\
         [probe]\ninterval = \"5 parsecs\"\nconcurrency = 0\nintervall = \"30s\"\n\
         [log]\nlevel = \"{}\"\n",
        "v".repeat(level_len)
    )
}

/// Each problem of [`many_errors`], as its line of the message starts.
const MANY_ERRORS: [&str; 6] = [
    "\n  database.max_connections: invalid type: string \"eight\", expected an integer",
    "\n  database.colour: unknown key (known here: `url`, ",
    "\n  probe.interval: invalid duration \"5 parsecs\"",
    "\n  probe.concurrency: must be between 1 and 100000, not 0",
    "\n  probe.intervall: unknown key (known here: `interval`, ",
    "\n  log.level: \"vvvvvvvvvv",
];

/// Every problem is listed, in the order of the keys, and the long value is cut to about 80
/// characters: the message stays a few lines whatever the file holds.
fn assert_all_listed(message: &str, level_len: usize) {
    let mut at = 0;
    for line in MANY_ERRORS {
        let found = message[at..].find(line);
        assert!(
            found.is_some(),
            "missing or out of order: {line}\n{message}"
        );
        at += found.unwrap() + line.len();
    }
    let cut = format!(
        "\"{}… ({level_len} bytes in all)\" is not a log filter",
        "v".repeat(80)
    );
    assert!(message.contains(&cut), "{message}");
    assert!(message.len() < 2000, "{} bytes: {message}", message.len());
}

#[test]
fn every_type_error_unknown_key_and_invalid_value_is_reported_in_one_go() {
    // Just under the 1 MiB cap from the command line; 10 MB through the library (no cap there).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many-errors.toml");
    std::fs::write(&path, many_errors(1_000_000)).unwrap();
    let out = healthd(&["config", "check", "-c", path.to_str().unwrap()], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains(&format!("invalid configuration in {}:", path.display())));
    assert_all_listed(&stderr, 1_000_000);

    let err = Config::from_toml(&many_errors(10_000_000), "t.toml", None).unwrap_err();
    assert_all_listed(&err.to_string(), 10_000_000);
}

#[test]
fn a_file_over_one_mib_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, many_errors(10_000_000)).unwrap();
    // /dev/zero never ends: without the cap this reads until memory runs out.
    for path in [big.to_str().unwrap(), "/dev/zero"] {
        let started = std::time::Instant::now();
        let out = healthd(&["-c", path, "config", "check"], &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{path}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "configuration file {path} is larger than the cap of 1048576 bytes (1 MiB)"
            )),
            "{stderr}"
        );
        assert!(stderr.len() < 300, "{stderr}");
        eprintln!("{path}: refused in {:?}", started.elapsed());
    }
}

#[test]
fn the_reference_config_is_valid_and_matches_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let reference = Config::load(Some(&root), None).unwrap();
    let defaults = Config::from_toml("", "empty", None).unwrap();
    assert_eq!(reference.to_effective_toml(), defaults.to_effective_toml());
    assert_eq!(reference.probe.interval.as_secs(), 30);
    assert_eq!(reference.uptime.retain.as_secs(), 90 * 86_400);
    assert_eq!(reference.jobs.partition_maintenance.premake_months, 3);
}

#[test]
fn database_url_env_overrides_the_file_and_is_redacted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let url = format!("postgres://svc:{PASSWORD}@10.1.2.3:6432/fleet");
    let out = healthd(
        &["-c", root.to_str().unwrap(), "config", "check"],
        &[("DATABASE_URL", &url)],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("url = \"postgres://svc:***@10.1.2.3:6432/fleet\""),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD));

    let bad = healthd(
        &["-c", root.to_str().unwrap(), "config", "check"],
        &[("DATABASE_URL", "redis://x:hunter2-secret@h/0")],
    );
    assert_eq!(bad.status.code(), Some(78));
    assert!(
        text(&bad.stderr).contains("DATABASE_URL: scheme must be"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn an_explicit_config_path_must_exist() {
    let out = healthd(
        &["-c", "/nonexistent/mcp-healthd.toml", "config", "check"],
        &[],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("cannot read configuration file /nonexistent/mcp-healthd.toml")
    );
}

#[test]
fn the_environment_names_the_config_file() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/invalid-log-format.toml");
    let out = healthd(
        &["config", "check"],
        &[("MCP_HEALTHD_CONFIG", root.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("log.format"));
}
