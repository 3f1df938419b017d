//! Where the configuration comes from: the `-c` path (or the default search) and
//! `DATABASE_URL`. Kept so that a reload (SIGHUP) reads exactly what start-up read.

use std::path::PathBuf;

use super::{Config, ConfigError};

#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl ConfigSource {
    /// `path` as given on the command line, and `DATABASE_URL` from the environment (an empty
    /// value counts as unset).
    pub fn from_env(path: Option<PathBuf>) -> Self {
        Self {
            path,
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty()),
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.path.as_deref(), self.database_url.as_deref())
    }
}
