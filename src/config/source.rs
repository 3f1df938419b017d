//! Where the configuration comes from: the `-c` path (or the default search) and
//! `DATABASE_URL`. Kept so that a reload (SIGHUP) reads exactly what start-up read. The file
//! is read with a size cap, so `-c /dev/zero` or a wrong multi-gigabyte file fails at once.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The largest configuration file read; the reference file is about 5 KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file at `path` as text, never more than [`MAX_FILE_BYTES`] of it read.
pub(super) fn read_capped(path: &Path) -> Result<String, ConfigError> {
    let read_error = |cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

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
