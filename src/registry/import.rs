//! `registry import DIR`: one `DIR/<service>/config.json` per service (the layout the original
//! design's migration 009 read from `mcp-ports/*/config.json`), validated as a whole and upserted
//! in one transaction, as one set: ports must be unique when it commits, so services may swap
//! ports in one import. Nothing is applied unless every file is valid.
//!
//! A file holds: `service_type` (defaults to the directory's name), `display_name`, `port`,
//! and optionally `name`, `category`, `auth_type` (`api_key`, `oauth2`, `basic_auth`, `none`),
//! `base_url`, `health_check_endpoint` (default `/health`), `description`, `icon_url`, and
//! `health` (per-service check overrides: `timeout`, `expected_status`, `method`, `headers`,
//! `body_contains`). Unknown keys are errors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sqlx::PgPool;
use sqlx::types::Json;

use crate::config::ProbeConfig;
use crate::plan::target::{self, Planned};
use crate::registry::RegistryRow;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    service_type: Option<String>,
    name: Option<String>,
    display_name: String,
    port: i64,
    category: Option<String>,
    #[serde(default = "default_auth")]
    auth_type: String,
    base_url: Option<String>,
    #[serde(default = "default_endpoint")]
    health_check_endpoint: String,
    description: Option<String>,
    icon_url: Option<String>,
    health: Option<serde_json::Value>,
}

fn default_auth() -> String {
    "api_key".into()
}

fn default_endpoint() -> String {
    "/health".into()
}

/// One validated service, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub service_type: String,
    pub name: String,
    pub display_name: String,
    pub port: i32,
    pub category: Option<String>,
    pub auth_type: String,
    pub base_url: Option<String>,
    pub health_check_endpoint: String,
    pub description: Option<String>,
    pub icon_url: Option<String>,
    pub health: Option<serde_json::Value>,
    /// Where it came from, for error messages.
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("registry import rejected, nothing was applied:{}", list(.0))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn list(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Set unavailable by `--prune`.
    pub pruned: Vec<String>,
}

/// Reads and validates every `DIR/*/config.json`. All problems are reported together.
pub fn read_dir(dir: &Path, probe: &ProbeConfig) -> Result<Vec<Entry>, ImportError> {
    let read_err = |source| ImportError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(Result::ok)
        .map(|e| e.path().join("config.json"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut problems = Vec::new();
    if files.is_empty() {
        problems.push(format!("{}: no */config.json files", dir.display()));
    }
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push((file, text)),
            Err(e) => problems.push(format!("{}: cannot read: {e}", file.display())),
        }
    }
    let parsed = validate_all(sources.iter().map(|(f, t)| (f.clone(), t.as_str())), probe);
    match parsed {
        Ok(entries) if problems.is_empty() => Ok(entries),
        Ok(_) => Err(ImportError::Invalid(problems)),
        Err(ImportError::Invalid(mut more)) => {
            problems.append(&mut more);
            Err(ImportError::Invalid(problems))
        }
        Err(other) => Err(other),
    }
}

/// Validates services given as (`DIR/<service>/config.json` path, file text) pairs, such as
/// the demo's built-in samples. All problems are reported together.
pub fn read_sources<'a>(
    sources: impl IntoIterator<Item = (PathBuf, &'a str)>,
    probe: &ProbeConfig,
) -> Result<Vec<Entry>, ImportError> {
    validate_all(sources, probe)
}

fn validate_all<'a>(
    sources: impl IntoIterator<Item = (PathBuf, &'a str)>,
    probe: &ProbeConfig,
) -> Result<Vec<Entry>, ImportError> {
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    for (file, text) in sources {
        match parse_entry(&file, text, probe) {
            Ok(entry) => entries.push(entry),
            Err(mut p) => problems.append(&mut p),
        }
    }
    problems.extend(duplicates(&entries));
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(ImportError::Invalid(problems))
    }
}

/// Ports and service types used by more than one entry.
fn duplicates(entries: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ports: HashMap<i32, &Path> = HashMap::new();
    let mut types: HashMap<&str, &Path> = HashMap::new();
    for e in entries {
        if let Some(other) = ports.insert(e.port, &e.file) {
            problems.push(format!(
                "{}: port {} is also used by {}",
                e.file.display(),
                e.port,
                other.display()
            ));
        }
        if let Some(other) = types.insert(&e.service_type, &e.file) {
            problems.push(format!(
                "{}: service_type {:?} is also defined by {}",
                e.file.display(),
                e.service_type,
                other.display()
            ));
        }
    }
    problems
}

/// One file's text -> a validated entry, or every problem with it.
fn parse_entry(file: &Path, text: &str, probe: &ProbeConfig) -> Result<Entry, Vec<String>> {
    let shown = file.display();
    let raw = deserialize(text).map_err(|e| vec![format!("{shown}: {e}")])?;
    let dir_name = file
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let service_type = raw.service_type.clone().unwrap_or(dir_name);
    let mut problems = field_problems(&raw, &service_type);
    let entry = Entry {
        name: raw.name.unwrap_or_else(|| service_type.clone()),
        service_type,
        display_name: raw.display_name,
        port: i32::try_from(raw.port).unwrap_or(0),
        category: raw.category,
        auth_type: raw.auth_type,
        base_url: raw.base_url,
        health_check_endpoint: raw.health_check_endpoint,
        description: raw.description,
        icon_url: raw.icon_url,
        health: raw.health,
        file: file.to_path_buf(),
    };
    // The same checks the prober applies: a row imported here is a row it can probe.
    if problems.is_empty()
        && let Planned::Invalid(invalid) = target::plan(&entry.as_row(), probe)
    {
        problems.push(invalid.reason);
    }
    if problems.is_empty() {
        Ok(entry)
    } else {
        Err(problems
            .into_iter()
            .map(|p| format!("{shown}: {p}"))
            .collect())
    }
}

/// The file's JSON, strictly: an unknown key or a wrong type is named with its path.
fn deserialize(text: &str) -> Result<ServiceFile, String> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde already names an unknown key in its message.
        if path == "." || inner.starts_with("unknown field") {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// What is wrong with the file's fields, each problem on its own.
fn field_problems(raw: &ServiceFile, service_type: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if service_type.is_empty() || !service_type.chars().all(valid_char) {
        problems.push(format!(
            "service_type {service_type:?} must be lowercase letters, digits, '_' or '-'"
        ));
    }
    if raw.display_name.trim().is_empty() {
        problems.push("display_name must not be empty".to_owned());
    }
    if !(1..=65535).contains(&raw.port) {
        problems.push(format!("port {} is outside 1-65535", raw.port));
    }
    if !["api_key", "oauth2", "basic_auth", "none"].contains(&raw.auth_type.as_str()) {
        problems.push(format!(
            "auth_type {:?} must be api_key, oauth2, basic_auth or none",
            raw.auth_type
        ));
    }
    let lengths = [
        ("service_type", Some(service_type), 50),
        ("display_name", Some(raw.display_name.as_str()), 100),
        ("name", raw.name.as_deref(), 100),
        ("category", raw.category.as_deref(), 100),
        ("base_url", raw.base_url.as_deref(), 255),
        ("icon_url", raw.icon_url.as_deref(), 500),
        (
            "health_check_endpoint",
            Some(raw.health_check_endpoint.as_str()),
            255,
        ),
    ];
    for (key, value, max) in lengths {
        if value.is_some_and(|v| v.chars().count() > max) {
            problems.push(format!("{key} is longer than {max} characters"));
        }
    }
    problems
}

impl Entry {
    fn service_config(&self) -> serde_json::Value {
        match &self.health {
            Some(h) => serde_json::json!({ "health": h }),
            None => serde_json::json!({}),
        }
    }

    fn as_row(&self) -> RegistryRow {
        RegistryRow {
            service_type: self.service_type.clone(),
            port: self.port,
            base_url: self.base_url.clone(),
            health_check_endpoint: self.health_check_endpoint.clone(),
            service_config: Json(self.service_config()),
        }
    }
}

/// A registry row as it stands before the import, in the shape of an [`Entry`].
#[derive(Debug, sqlx::FromRow)]
struct Existing {
    service_type: String,
    name: String,
    display_name: String,
    port: i32,
    category: Option<String>,
    auth_type: String,
    base_url: Option<String>,
    health_check_endpoint: String,
    description: Option<String>,
    icon_url: Option<String>,
    health: Option<serde_json::Value>,
    is_available: bool,
}

impl Existing {
    /// Whether upserting `e` would change nothing.
    fn matches(&self, e: &Entry) -> bool {
        self.is_available
            && (
                &self.name,
                &self.display_name,
                self.port,
                &self.category,
                &self.auth_type,
                &self.base_url,
                &self.health_check_endpoint,
                &self.description,
                &self.icon_url,
                &self.health,
            ) == (
                &e.name,
                &e.display_name,
                e.port,
                &e.category,
                &e.auth_type,
                &e.base_url,
                &e.health_check_endpoint,
                &e.description,
                &e.icon_url,
                &e.health,
            )
    }
}

/// Upserts `entries` in one transaction; with `prune`, services not among them are set
/// unavailable (never deleted).
pub async fn apply(pool: &PgPool, entries: &[Entry], prune: bool) -> Result<Summary, ImportError> {
    write(pool, entries, prune, true).await
}

/// What [`apply`] would change, found by doing it in a transaction that is rolled back:
/// the same checks and the same summary, nothing written (`--dry-run`).
pub async fn preview(
    pool: &PgPool,
    entries: &[Entry],
    prune: bool,
) -> Result<Summary, ImportError> {
    write(pool, entries, prune, false).await
}

async fn write(
    pool: &PgPool,
    entries: &[Entry],
    prune: bool,
    commit: bool,
) -> Result<Summary, ImportError> {
    let mut tx = pool.begin().await?;
    // Serialise concurrent imports; the registry is small.
    sqlx::query("LOCK TABLE service_registry IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    // Ports are unique in the set being applied, not after each row: two services may swap.
    sqlx::query("SET CONSTRAINTS service_registry_port_key DEFERRED")
        .execute(&mut *tx)
        .await?;
    let existing = load_existing(&mut tx).await?;
    let problems = port_conflicts(entries, &existing);
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }
    let mut summary = Summary::default();
    for e in entries {
        let (bucket, write) = match existing.get(&e.service_type) {
            None => (&mut summary.added, true),
            Some(row) if row.matches(e) => (&mut summary.unchanged, false),
            Some(_) => (&mut summary.changed, true),
        };
        bucket.push(e.service_type.clone());
        if write {
            upsert(&mut tx, e).await?;
        }
    }
    if prune {
        summary.pruned = prune_others(&mut tx, entries).await?;
    }
    match commit {
        true => tx.commit().await?,
        false => tx.rollback().await?,
    }
    Ok(summary)
}

async fn load_existing(
    tx: &mut sqlx::PgConnection,
) -> Result<BTreeMap<String, Existing>, ImportError> {
    let rows: Vec<Existing> = sqlx::query_as(
        "SELECT service_type::text, name::text, display_name::text, port, category::text,
                auth_type::text, base_url::text, health_check_endpoint::text, description,
                icon_url::text, service_config -> 'health' AS health, is_available
           FROM service_registry",
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.service_type.clone(), r))
        .collect())
}

/// Entries whose port another registry service holds (one the import does not also rewrite).
fn port_conflicts(entries: &[Entry], existing: &BTreeMap<String, Existing>) -> Vec<String> {
    let rewritten = |service: &str| entries.iter().any(|o| o.service_type == service);
    entries
        .iter()
        .filter_map(|e| {
            let holder = existing
                .values()
                .find(|r| r.port == e.port && r.service_type != e.service_type)?;
            (!rewritten(&holder.service_type)).then(|| {
                format!(
                    "{}: port {} is already used by service {:?} in the registry",
                    e.file.display(),
                    e.port,
                    holder.service_type
                )
            })
        })
        .collect()
}

async fn upsert(tx: &mut sqlx::PgConnection, e: &Entry) -> Result<(), ImportError> {
    sqlx::query(
        "INSERT INTO service_registry AS r
                (service_type, name, display_name, port, category, auth_type, base_url,
                 health_check_endpoint, description, icon_url, service_config, is_available)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true)
         ON CONFLICT (service_type) DO UPDATE
            SET name = EXCLUDED.name, display_name = EXCLUDED.display_name, port = EXCLUDED.port,
                category = EXCLUDED.category, auth_type = EXCLUDED.auth_type, base_url = EXCLUDED.base_url,
                health_check_endpoint = EXCLUDED.health_check_endpoint, description = EXCLUDED.description,
                icon_url = EXCLUDED.icon_url, is_available = true,
                service_config = (r.service_config - 'health') || EXCLUDED.service_config",
    )
    .bind(&e.service_type)
    .bind(&e.name)
    .bind(&e.display_name)
    .bind(e.port)
    .bind(&e.category)
    .bind(&e.auth_type)
    .bind(&e.base_url)
    .bind(&e.health_check_endpoint)
    .bind(&e.description)
    .bind(&e.icon_url)
    .bind(Json(e.service_config()))
    .execute(&mut *tx)
    .await
    .map_err(|err| ImportError::Invalid(vec![format!("{}: {err}", e.file.display())]))?;
    Ok(())
}

/// Sets every available service not among `entries` unavailable; returns them, sorted.
async fn prune_others(
    tx: &mut sqlx::PgConnection,
    entries: &[Entry],
) -> Result<Vec<String>, ImportError> {
    let keep: Vec<&str> = entries.iter().map(|e| e.service_type.as_str()).collect();
    let mut pruned: Vec<String> = sqlx::query_scalar(
        "UPDATE service_registry SET is_available = false
          WHERE is_available AND service_type <> ALL ($1::text[])
         RETURNING service_type::text",
    )
    .bind(&keep)
    .fetch_all(&mut *tx)
    .await?;
    pruned.sort();
    Ok(pruned)
}
