//! Why a connection to PostgreSQL failed, in one sentence an operator can act on: where the
//! server was (host, port, user), what went wrong (refused, no answer, password, no such
//! database), and where the URL came from. The cause is said once; no source line numbers.

use crate::config::DatabaseConfig;

/// What kind of failure, which decides whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused, no answer, reset: the server may come (back).
    Unreachable,
    /// The server rejected the credentials: the configuration must change.
    Auth,
    /// The database named in the URL does not exist.
    Missing,
    /// Anything else (TLS, protocol): said as the driver says it.
    Other,
}

/// Where the URL points: `host:port`, the user and the database, as shown to people.
struct Place {
    host_port: String,
    user: String,
    database: String,
}

fn place(config: &DatabaseConfig) -> Place {
    let url = url::Url::parse(config.url.expose()).ok();
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let port = url.as_ref().and_then(url::Url::port).unwrap_or(5432);
    let user = url
        .as_ref()
        .map(|u| u.username().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "the current user".to_owned());
    let database = config.url.database_name().unwrap_or_else(|| user.clone());
    Place {
        host_port: format!("{host}:{port}"),
        user,
        database,
    }
}

/// The failure's kind and its sentence (without the URL's origin, which the error adds).
pub fn explain(config: &DatabaseConfig, e: &sqlx::Error) -> (ConnectFailure, String) {
    let p = place(config);
    let cannot = |why: &str| {
        format!(
            "cannot connect to PostgreSQL at {} as {} ({why})",
            p.host_port, p.user
        )
    };
    let code = e.as_database_error().and_then(|d| d.code());
    match (e, code.as_deref()) {
        (_, Some("28P01")) => (
            ConnectFailure::Auth,
            format!("password rejected for user {}", p.user),
        ),
        (_, Some("3D000")) => (
            ConnectFailure::Missing,
            format!(
                "database {} does not exist — run mcp-healthd migrate",
                p.database
            ),
        ),
        (sqlx::Error::Database(d), Some("28000")) => (
            ConnectFailure::Auth,
            cannot(&format!("not allowed: {}", crate::text::echo(d.message()))),
        ),
        (sqlx::Error::Io(io), _) => (ConnectFailure::Unreachable, cannot(&io_reason(io))),
        (sqlx::Error::PoolTimedOut, _) => (
            ConnectFailure::Unreachable,
            cannot(&format!(
                "no answer within {}",
                humantime::format_duration(config.connect_timeout)
            )),
        ),
        (sqlx::Error::Tls(t), _) => (
            ConnectFailure::Other,
            cannot(&format!("TLS: {}", crate::text::echo(&t.to_string()))),
        ),
        (other, _) => (
            ConnectFailure::Other,
            cannot(&crate::text::echo(&other.to_string())),
        ),
    }
}

fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused — is it running?".to_owned(),
        K::TimedOut => "no answer — is the host reachable?".to_owned(),
        K::NotFound => "no such socket — is it running?".to_owned(),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof => {
            "the server closed the connection".to_owned()
        }
        _ => crate::text::echo(&io.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(url: &str) -> DatabaseConfig {
        Config::from_toml("", "test", Some(url)).unwrap().database
    }

    #[test]
    fn a_refused_connection_names_the_place_once() {
        let c = config("postgres://monitor:secret@db.example:6543/health");
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let (kind, sentence) = explain(&c, &refused);
        assert_eq!(kind, ConnectFailure::Unreachable);
        assert_eq!(
            sentence,
            "cannot connect to PostgreSQL at db.example:6543 as monitor (connection refused — is it running?)"
        );
        let (_, timed_out) = explain(&c, &sqlx::Error::PoolTimedOut);
        assert!(timed_out.ends_with("(no answer within 5s)"), "{timed_out}");
    }
}
