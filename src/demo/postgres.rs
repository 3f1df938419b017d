//! A throwaway PostgreSQL cluster for the demo, made from the system's `initdb` and `postgres`
//! binaries in a temporary directory, listening on a free loopback port, trust auth. Stopped
//! (fast shutdown) and removed by [`Throwaway::stop`], or on drop. It runs in a process group
//! of its own, so a Ctrl-C at the terminal reaches only the demo, which stops it last.
//!
//! initdb refuses to run as root; as root, the cluster runs as the `postgres` user, switched to
//! directly with `setuid`/`setgid` on the child (no sudo needed).
//!
//! Nothing is made by a predictable name or changed hands after it was made (a local user could
//! otherwise plant a symlink and have root overwrite or chown a file): the cluster's directory
//! comes from `mkdtemp` and belongs to the user the cluster runs as from its creation
//! ([`cluster_dir`]); the server's log is an anonymous file of ours that it inherits.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::config::DatabaseUrl;

pub struct Throwaway {
    child: Option<Child>,
    /// The data directory and socket directory's parent; `None` once removed.
    dir: Option<TempDir>,
    /// The server's stderr: unlinked from the start, read back only if it fails to start.
    log: File,
    pub url: DatabaseUrl,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, else `initdb` on PATH.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .context("no PostgreSQL server binaries (initdb, postgres) found; install the postgresql package")
}

/// (uid, gid) of the `postgres` user, when running as root.
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static passwd entry we read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!("initdb refuses to run as root, and there is no `postgres` user to run it as");
    }
    // SAFETY: pw is non-null and points at a valid passwd entry.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// A new directory of unpredictable name in the temporary directory (`mkdtemp`: never an
/// existing path or a link), mode 0700. As root it must belong to `user` for the cluster: it is
/// made by a thread whose filesystem ids (`setfsuid`, per thread, gone with the thread) are that
/// user's, so it is theirs from its creation and nothing is chowned.
fn cluster_dir(user: Option<(u32, u32)>) -> anyhow::Result<TempDir> {
    let make = || {
        tempfile::Builder::new()
            .prefix("mcp-healthd-demo-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .context("cannot create the throwaway cluster's directory")
    };
    let Some((uid, gid)) = user else {
        return make();
    };
    let made = std::thread::spawn(move || {
        // SAFETY: these change only the calling thread's filesystem ids. Neither reports an
        // error; a second call returns the id in force, which is checked.
        let in_force = unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
            (libc::setfsgid(gid) as u32, libc::setfsuid(uid) as u32)
        };
        if in_force != (gid, uid) {
            bail!(
                "cannot act as the postgres user ({uid}:{gid}) to create the cluster's directory"
            );
        }
        make()
    });
    made.join()
        .map_err(|_| anyhow::anyhow!("the thread creating the cluster's directory panicked"))?
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn command(bin: &Path, name: &str, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin.join(name));
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    // A process group of its own: the terminal's Ctrl-C goes to the demo, which stops the
    // server after the daemon's final flush, not to the server first.
    cmd.process_group(0);
    // ...so a demo killed outright (SIGKILL, a crash) must still take the server with it: the
    // kernel sends SIGINT (a fast shutdown) when the demo's thread that started it is gone. Set
    // after the uid change (which would clear it); runtime worker threads live as long as the
    // demo.
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

impl Throwaway {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let user = run_as()?;
        let cluster = cluster_dir(user)?;
        let dir = cluster.path().to_path_buf();
        let mut this = Self {
            child: None,
            dir: Some(cluster),
            log: tempfile::tempfile().context("cannot create the server's log file")?,
            url: DatabaseUrl::parse("postgres://postgres@127.0.0.1:1/postgres").expect("literal"),
        };
        let data = dir.join("data");
        let init = command(&bin, "initdb", user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .context("cannot run initdb")?;
        if !init.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            );
        }
        let port = free_port()?;
        let log = this.log.try_clone()?;
        let child = command(&bin, "postgres", user)
            .arg("-D")
            .arg(&data)
            // No TCP at all: the cluster trusts whoever connects, so only its socket, in the
            // cluster's own 0700 directory, is open (a local user cannot reach it).
            .args(["-p", &port.to_string(), "-h", "", "-k"])
            .arg(&dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start postgres")?;
        this.child = Some(child);
        let socket_dir = url::form_urlencoded::byte_serialize(dir.as_os_str().as_encoded_bytes())
            .collect::<String>();
        this.url = DatabaseUrl::parse(&format!(
            "postgres://postgres@localhost:{port}/postgres?host={socket_dir}"
        ))
        .map_err(|e| anyhow::anyhow!("the cluster's socket directory does not make a URL: {e}"))?;
        this.wait_ready().await?;
        Ok(this)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if sqlx::PgConnection::connect(self.url.expose()).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "postgres exited ({status}) while starting:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The start of what the server wrote (it has exited; the file offset is shared with it).
    fn log_text(&self) -> String {
        let mut text = String::new();
        let mut log = &self.log;
        let _ = log.seek(SeekFrom::Start(0));
        let _ = log.take(64 * 1024).read_to_string(&mut text);
        text
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), TempDir::path)
    }

    /// Fast shutdown (SIGINT), then removes the directory.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with a valid pid of our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(dir) = self.dir.take() {
            let shown = dir.path().display().to_string();
            dir.close()
                .with_context(|| format!("cannot remove {shown}"))?;
        }
        Ok(())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_cluster_directory_is_new_private_and_the_cluster_users_from_its_creation() {
        let user = run_as().ok().flatten();
        let (a, b) = (cluster_dir(user).unwrap(), cluster_dir(user).unwrap());
        assert_ne!(a.path(), b.path(), "names are not predictable");
        let meta = std::fs::symlink_metadata(a.path()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // SAFETY: geteuid and getegid have no preconditions.
        let me = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((meta.uid(), meta.gid()), user.unwrap_or(me));
        // The thread's filesystem ids went with it: what this thread makes is still its own.
        let mine = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(mine.path()).unwrap();
        assert_eq!((meta.uid(), meta.gid()), me);
    }
}
