//! Running the real `mcp-healthd run` against a test database, reading its alert log.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_healthd::config::DatabaseUrl;
use serde_json::Value;

pub struct Daemon {
    child: Child,
    log: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// A configuration for fast tests; `extra` is appended (later keys must not repeat earlier ones,
/// so tests pass whole sections that these defaults do not set).
pub fn fast_config(probe: &str, extra: &str) -> String {
    format!(
        "[database]\nflush_interval = \"200ms\"\nconnect_timeout = \"1s\"\n\
         [probe]\n{probe}\n\
         [log]\nformat = \"json\"\nlevel = \"info\"\n\
         [http]\nlisten = \"\"\n\
         [daemon]\nshutdown_grace = \"2s\"\n{extra}"
    )
}

impl Daemon {
    /// Starts the daemon and waits until it has loaded the registry.
    pub fn start(db: &DatabaseUrl, config: &str) -> Self {
        let daemon = Self::spawn(db, config, &[]);
        daemon.wait_for(|e| e["event"] == "daemon_started", Duration::from_secs(20));
        daemon
    }

    /// Starts the daemon with extra environment, without waiting for anything.
    pub fn spawn(db: &DatabaseUrl, config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("daemon.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-healthd"));
        command
            .args(["-c", config_path.to_str().unwrap(), "run"])
            .env("DATABASE_URL", db.expose())
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("STATE_DIRECTORY")
            // Several daemons of one test share a host: each its own node name, unless the
            // test gives one (a restart under the same name).
            .env(
                "MCP_HEALTHD_NODE_NAME",
                format!("it-{}", uuid::Uuid::new_v4().simple()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start mcp-healthd run");
        Self {
            child,
            log,
            config: config_path,
            _dir: dir,
        }
    }

    /// Replaces the configuration file (for a reload).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
    }

    /// Whether the process has exited, and how.
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().unwrap().map(|s| s.code())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every JSON line of the log so far.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    }

    pub fn raw_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until an event matches, or panics with the log.
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "event not seen within {limit:?}; log:\n{}",
                self.raw_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// SIGTERM, then waits for the exit; returns the exit code and the whole log.
    pub fn stop(mut self) -> (Option<i32>, Vec<Value>) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.events());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("daemon did not stop within 15 s; log:\n{}", self.raw_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
