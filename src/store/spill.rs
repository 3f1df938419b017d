//! Results that could not be written before exit, kept on disk until the next start. At
//! shutdown, a batch the database did not take is written to `daemon.state_dir` as one JSON file
//! (atomically: a temporary file renamed into place, mode 0600); at start-up each file is
//! flushed under the batch ids it was saved with, so replaying a file twice (a crash between the
//! flush and the file's removal) counts nothing twice, and then the file is removed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::FlushContext;
use super::pending::{Incident, IncidentClose, Pending, RollupDelta, StatusRow};
use crate::plan::health::ServiceState;
use crate::probe::ErrorKind;

/// The format written. 2 added incidents, reclassified failures, the counts left out of uptime
/// and the state the alerts need; format 1 files (without them) are still read.
const FORMAT: u32 = 2;

/// Files this module writes are named `unwritten-results-<uuid>.json`.
const PREFIX: &str = "unwritten-results-";
/// A spill file larger than this is not ours (the pending batch is bounded by the services and
/// the hours of an outage); it is left alone and reported.
const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct SpillFile {
    format: u32,
    batches: Vec<SpilledBatch>,
}

/// One batch under the id its flush used (or would have used).
#[derive(Debug, Serialize, Deserialize)]
struct SpilledBatch {
    id: uuid::Uuid,
    status: Vec<SpilledStatus>,
    rollups: Vec<SpilledRollup>,
    // Added after format 1's first files: absent in those, so defaulted.
    #[serde(default)]
    opened: Vec<Incident>,
    #[serde(default)]
    closed: Vec<(String, IncidentClose)>,
    #[serde(default)]
    reclassified: Vec<(String, DateTime<Utc>, i32)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SpilledStatus {
    service_type: String,
    healthy: Option<bool>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    state_changed_at: Option<DateTime<Utc>>,
    checked_at: DateTime<Utc>,
    response_time_ms: i32,
    error_message: Option<String>,
    error_kind: Option<String>,
    #[serde(default)]
    degraded_reason: Option<String>,
    #[serde(default)]
    tls_not_after: Option<DateTime<Utc>>,
    #[serde(default)]
    flapping: bool,
    #[serde(default)]
    recent_failures: u64,
    #[serde(default)]
    recent_checks: u8,
    /// Absent in format 1: what was judged.
    #[serde(default)]
    alerted_down: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SpilledRollup {
    service_type: String,
    hour: DateTime<Utc>,
    checks: i32,
    failures: i32,
    latency_sum_ms: i64,
    latency_max_ms: i32,
    #[serde(default)]
    maintenance_checks: i32,
    #[serde(default)]
    inconclusive_checks: i32,
}

impl SpilledBatch {
    fn of(id: uuid::Uuid, batch: &Pending) -> Self {
        let status = batch
            .status
            .iter()
            .map(|(service, row)| SpilledStatus {
                service_type: service.clone(),
                healthy: row.state.healthy,
                consecutive_failures: row.state.consecutive_failures,
                consecutive_successes: row.state.consecutive_successes,
                last_success_at: row.state.last_success_at,
                last_failure_at: row.state.last_failure_at,
                state_changed_at: row.state.state_changed_at,
                checked_at: row.checked_at,
                response_time_ms: row.response_time_ms,
                error_message: row.error_message.clone(),
                error_kind: row.error_kind.map(str::to_owned),
                degraded_reason: row.state.degraded.clone(),
                tls_not_after: row.state.tls_not_after,
                flapping: row.state.flapping,
                recent_failures: row.state.recent_failures,
                recent_checks: row.state.recent_checks,
                alerted_down: Some(row.state.alerted_down),
            })
            .collect();
        let rollups = batch
            .rollups
            .iter()
            .map(|((service, hour), d)| SpilledRollup {
                service_type: service.clone(),
                hour: *hour,
                checks: d.checks,
                failures: d.failures,
                latency_sum_ms: d.latency_sum_ms,
                latency_max_ms: d.latency_max_ms,
                maintenance_checks: d.maintenance_checks,
                inconclusive_checks: d.inconclusive_checks,
            })
            .collect();
        Self {
            id,
            status,
            rollups,
            opened: batch.opened.clone(),
            closed: batch
                .closed
                .iter()
                .map(|(s, c)| (s.clone(), c.clone()))
                .collect(),
            reclassified: batch
                .reclassified
                .iter()
                .map(|((s, h), n)| (s.clone(), *h, *n))
                .collect(),
        }
    }

    fn into_pending(self) -> (uuid::Uuid, Pending) {
        let status: HashMap<String, StatusRow> = self
            .status
            .into_iter()
            .map(|s| {
                let state = ServiceState {
                    healthy: s.healthy,
                    consecutive_failures: s.consecutive_failures,
                    consecutive_successes: s.consecutive_successes,
                    last_success_at: s.last_success_at,
                    last_failure_at: s.last_failure_at,
                    state_changed_at: s.state_changed_at,
                    degraded: s.degraded_reason,
                    tls_not_after: s.tls_not_after,
                    flapping: s.flapping,
                    recent_failures: s.recent_failures,
                    recent_checks: s.recent_checks,
                    alerted_down: s.alerted_down.unwrap_or(s.healthy == Some(false)),
                    ..ServiceState::default()
                };
                let error_kind = s.error_kind.as_deref().and_then(|k| {
                    ErrorKind::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .find(|known| *known == k)
                });
                let row = StatusRow {
                    state,
                    checked_at: s.checked_at,
                    response_time_ms: s.response_time_ms,
                    error_message: s.error_message,
                    error_kind,
                };
                (s.service_type, row)
            })
            .collect();
        let rollups = self
            .rollups
            .into_iter()
            .map(|r| {
                let delta = RollupDelta {
                    checks: r.checks,
                    failures: r.failures,
                    latency_sum_ms: r.latency_sum_ms,
                    latency_max_ms: r.latency_max_ms,
                    maintenance_checks: r.maintenance_checks,
                    inconclusive_checks: r.inconclusive_checks,
                };
                ((r.service_type, r.hour), delta)
            })
            .collect();
        let pending = Pending {
            status,
            rollups,
            opened: self.opened,
            closed: self.closed.into_iter().collect(),
            reclassified: self
                .reclassified
                .into_iter()
                .map(|(s, h, n)| ((s, h), n))
                .collect(),
        };
        (self.id, pending)
    }
}

/// Writes `batches` (each under its id) to a new file in `dir`, creating `dir` if needed.
/// Returns the file's path.
pub fn save(dir: &Path, batches: &[(uuid::Uuid, &Pending)]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = SpillFile {
        format: FORMAT,
        batches: batches
            .iter()
            .map(|(id, batch)| SpilledBatch::of(*id, batch))
            .collect(),
    };
    let name = format!("{PREFIX}{}.json", uuid::Uuid::new_v4());
    let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(name));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(&serde_json::to_vec(&file).map_err(std::io::Error::other)?)?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The spill files in `dir`, oldest name first; none when `dir` does not exist.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !entry.file_type()?.is_file() {
            continue;
        }
        if name.starts_with(PREFIX) && name.ends_with(".json") {
            found.push(entry.path());
        } else if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".tmp") {
            // Half-written by a run that died while saving: its batch was never confirmed
            // saved, and the file may be cut short.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The batches of one spill file, each under the id it was saved with.
pub fn load(path: &Path) -> std::io::Result<Vec<(uuid::Uuid, Pending)>> {
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB; not a file this daemon wrote",
            MAX_FILE_BYTES >> 20
        )));
    }
    let file: SpillFile = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    if !(1..=FORMAT).contains(&file.format) {
        return Err(std::io::Error::other(format!(
            "format {} is not one this daemon reads",
            file.format
        )));
    }
    Ok(file
        .batches
        .into_iter()
        .map(SpilledBatch::into_pending)
        .collect())
}

/// What [`replay`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub files: usize,
    pub checks: i64,
}

/// Flushes every spill file of `dir`, each batch under its saved id, and removes each file once
/// all its batches are written. A file that cannot be read or written is left in place for the
/// next start and reported (`replay_failed`); the others go on.
pub async fn replay(
    pool: &sqlx::PgPool,
    dir: &Path,
    ctx: &FlushContext<'_>,
    limit: std::time::Duration,
) -> std::io::Result<Replayed> {
    let mut done = Replayed::default();
    for path in files(dir)? {
        match replay_file(pool, &path, ctx, limit).await {
            Ok(checks) => {
                std::fs::remove_file(&path)?;
                done.files += 1;
                done.checks += checks;
            }
            Err(e) => tracing::error!(event = "replay_failed", file = %path.display(), error = %e,
                                      "kept for the next start"),
        }
    }
    Ok(done)
}

async fn replay_file(
    pool: &sqlx::PgPool,
    path: &Path,
    ctx: &FlushContext<'_>,
    limit: std::time::Duration,
) -> Result<i64, String> {
    let batches = load(path).map_err(|e| e.to_string())?;
    let mut checks = 0;
    for (id, batch) in &batches {
        let write = super::flush(pool, *id, batch, ctx, Utc::now());
        super::db::deadline(limit, write)
            .await
            .map_err(|e| e.to_string())?;
        checks += batch.checks();
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Check, Outcome};
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn a_saved_batch_loads_back_whole_under_its_id() {
        let dir = std::env::temp_dir().join(format!("spill-test-{}", uuid::Uuid::new_v4()));
        let mut batch = Pending::default();
        let check = Check {
            started_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            latency: Duration::from_millis(12),
            outcome: Outcome::failure(ErrorKind::Timeout, "slow"),
            tls_not_after: None,
        };
        let state = ServiceState {
            healthy: Some(false),
            consecutive_failures: 3,
            ..ServiceState::default()
        };
        batch.record("svc", &state, &check);
        let id = uuid::Uuid::new_v4();
        let path = save(&dir, &[(id, &batch)]).unwrap();
        assert_eq!(files(&dir).unwrap(), vec![path.clone()]);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, id);
        assert_eq!(loaded[0].1.status, batch.status);
        assert_eq!(loaded[0].1.rollups, batch.rollups);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            files(&dir).unwrap().is_empty(),
            "a missing dir holds no files"
        );
    }
}
