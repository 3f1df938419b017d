//! `registry import DIR`: one `DIR/<service>/config.json` per service (the layout the original
//! design's migration 009 read from `mcp-ports/*/config.json`), validated as a whole and upserted
//! in one transaction. Nothing is applied unless every file is valid.
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
use crate::registry::RegistryRow;
use crate::target::{self, Planned};

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

fn check_len(problems: &mut Vec<String>, file: &Path, key: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        problems.push(format!(
            "{}: {key} is longer than {max} characters",
            file.display()
        ));
    }
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
    let mut entries = Vec::new();
    for file in files {
        match read_file(&file, probe) {
            Ok(entry) => entries.push(entry),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let mut ports: HashMap<i32, &Path> = HashMap::new();
    let mut types: HashMap<&str, &Path> = HashMap::new();
    for e in &entries {
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
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(ImportError::Invalid(problems))
    }
}

fn read_file(file: &Path, probe: &ProbeConfig) -> Result<Entry, Vec<String>> {
    let shown = file.display();
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![format!("{shown}: cannot read: {e}")])?;
    let raw: ServiceFile = serde_path_to_error::deserialize(
        &mut serde_json::Deserializer::from_str(&text),
    )
    .map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let inner = inner.to_string();
        // serde already names an unknown key in its message.
        if path == "." || inner.starts_with("unknown field") {
            vec![format!("{shown}: {inner}")]
        } else {
            vec![format!("{shown}: {path}: {inner}")]
        }
    })?;
    let dir_name = file
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let service_type = raw.service_type.clone().unwrap_or(dir_name);
    let mut problems = Vec::new();
    if service_type.is_empty()
        || !service_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        problems.push(format!(
            "{shown}: service_type {service_type:?} must be lowercase letters, digits, '_' or '-'"
        ));
    }
    check_len(&mut problems, file, "service_type", &service_type, 50);
    check_len(&mut problems, file, "display_name", &raw.display_name, 100);
    if raw.display_name.trim().is_empty() {
        problems.push(format!("{shown}: display_name must not be empty"));
    }
    if !(1..=65535).contains(&raw.port) {
        problems.push(format!("{shown}: port {} is outside 1-65535", raw.port));
    }
    if !["api_key", "oauth2", "basic_auth", "none"].contains(&raw.auth_type.as_str()) {
        problems.push(format!(
            "{shown}: auth_type {:?} must be api_key, oauth2, basic_auth or none",
            raw.auth_type
        ));
    }
    for (key, value, max) in [
        ("name", raw.name.as_deref(), 100),
        ("category", raw.category.as_deref(), 100),
        ("base_url", raw.base_url.as_deref(), 255),
        ("icon_url", raw.icon_url.as_deref(), 500),
        (
            "health_check_endpoint",
            Some(raw.health_check_endpoint.as_str()),
            255,
        ),
    ] {
        if let Some(v) = value {
            check_len(&mut problems, file, key, v, max);
        }
    }
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
        problems.push(format!("{shown}: {}", invalid.reason));
    }
    if problems.is_empty() {
        Ok(entry)
    } else {
        Err(problems)
    }
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

type Existing = (
    String,
    String,
    String,
    i32,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<serde_json::Value>,
    bool,
);

/// Upserts `entries` in one transaction; with `prune`, services not among them are set
/// unavailable (never deleted).
pub async fn apply(pool: &PgPool, entries: &[Entry], prune: bool) -> Result<Summary, ImportError> {
    let mut tx = pool.begin().await?;
    // Serialise concurrent imports; the registry is small.
    sqlx::query("LOCK TABLE service_registry IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<Existing> = sqlx::query_as(
        "SELECT service_type::text, name::text, display_name::text, port, category::text, auth_type::text,
                base_url::text, health_check_endpoint::text, description, icon_url::text,
                service_config -> 'health', is_available
           FROM service_registry",
    )
    .fetch_all(&mut *tx)
    .await?;
    let existing: BTreeMap<String, Existing> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();

    let mut problems = Vec::new();
    for e in entries {
        if let Some(holder) = existing
            .values()
            .find(|r| r.3 == e.port && r.0 != e.service_type)
            && !entries.iter().any(|o| o.service_type == holder.0)
        {
            problems.push(format!(
                "{}: port {} is already used by service {:?} in the registry",
                e.file.display(),
                e.port,
                holder.0
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Invalid(problems));
    }

    let mut summary = Summary::default();
    for e in entries {
        let same = existing.get(&e.service_type).is_some_and(|r| {
            (
                &r.1, &r.2, r.3, &r.4, &r.5, &r.6, &r.7, &r.8, &r.9, &r.10, r.11,
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
                true,
            )
        });
        let bucket = match existing.contains_key(&e.service_type) {
            false => &mut summary.added,
            true if same => &mut summary.unchanged,
            true => &mut summary.changed,
        };
        bucket.push(e.service_type.clone());
        if same {
            continue;
        }
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
    }
    if prune {
        let keep: Vec<&str> = entries.iter().map(|e| e.service_type.as_str()).collect();
        summary.pruned = sqlx::query_scalar(
            "UPDATE service_registry SET is_available = false
              WHERE is_available AND service_type <> ALL ($1::text[])
             RETURNING service_type::text",
        )
        .bind(&keep)
        .fetch_all(&mut *tx)
        .await?;
        summary.pruned.sort();
    }
    tx.commit().await?;
    Ok(summary)
}
