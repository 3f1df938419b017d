//! Small value types the configuration is parsed into: a database URL that cannot print its
//! password, an HTTP status set such as `200-299,304`, and the log format.

use std::fmt;
use std::str::FromStr;

/// A PostgreSQL connection URL. `Display` and `Debug` hide the password, so the URL can be
/// logged or printed anywhere; only [`DatabaseUrl::expose`] hands out the real string.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme must be postgres:// or postgresql://, not {}://",
                url.scheme()
            ));
        }
        sqlx::postgres::PgConnectOptions::from_str(raw)
            .map_err(|e| format!("not a PostgreSQL URL ({})", redact_in(&e.to_string(), raw)))?;
        Ok(Self(raw.to_owned()))
    }

    /// The URL with its password, for connecting. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The database name in the URL's path, if any.
    pub fn database_name(&self) -> Option<String> {
        let url = url::Url::parse(&self.0).ok()?;
        let name = url.path().trim_start_matches('/');
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// The same URL pointing at another database on the same server.
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = url::Url::parse(&self.0).expect("validated at construction");
        url.set_path(&format!("/{name}"));
        Self(url.to_string())
    }

    pub fn password(&self) -> Option<String> {
        let url = url::Url::parse(&self.0).ok()?;
        url.password().map(|p| {
            url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| p.to_owned())
        })
    }
}

/// Replaces every occurrence of the URL's password in `text` with `***`.
fn redact_in(text: &str, raw_url: &str) -> String {
    match url::Url::parse(raw_url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(p) if !p.is_empty() => text.replace(&p, "***"),
        _ => text.to_owned(),
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                // Passwords can also hide in the query string (`?password=`).
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("<unparseable database URL>"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A set of acceptable HTTP status codes, written as `200-299` or `200,204,300-399`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl FromStr for StatusSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let code = |t: &str| -> Result<u16, String> {
            let n: u16 = t
                .trim()
                .parse()
                .map_err(|_| format!("\"{}\" is not a status code", crate::text::echo(t)))?;
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{n} is outside 100-599"))
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let range = match part.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            if range.0 > range.1 {
                return Err(format!("range {}-{} is backwards", range.0, range.1));
            }
            ranges.push(range);
        }
        Ok(Self(ranges))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!(
                "must be \"json\" or \"text\", not \"{}\"",
                crate::text::echo(other)
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_hides_password_everywhere_it_prints() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cr%21t@db.internal:5432/mcp?sslmode=require")
                .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("app:***@db.internal"), "{shown}");
        assert_eq!(url.password().as_deref(), Some("s3cr!t"));
        let query = DatabaseUrl::parse("postgres://db/mcp?password=hunter2").unwrap();
        assert!(!query.to_string().contains("hunter2"));
    }

    #[test]
    fn database_url_rejects_other_schemes_and_garbage() {
        assert!(
            DatabaseUrl::parse("mysql://x/y")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            DatabaseUrl::parse("not a url")
                .unwrap_err()
                .contains("not a URL")
        );
    }

    #[test]
    fn database_url_switches_database() {
        let url = DatabaseUrl::parse("postgres://u:p@h:1/one").unwrap();
        assert_eq!(url.database_name().as_deref(), Some("one"));
        assert_eq!(url.with_database("two").expose(), "postgres://u:p@h:1/two");
    }

    #[test]
    fn status_sets() {
        let cases = [
            ("200-299", 204, true),
            ("200-299", 301, false),
            ("200,204,300-399", 302, true),
            ("200,204", 201, false),
            (" 418 ", 418, true),
        ];
        for (spec, code, want) in cases {
            let set: StatusSet = spec.parse().unwrap();
            assert_eq!(set.contains(code), want, "{spec} contains {code}");
        }
        for bad in ["", "2xx", "99", "600", "300-200", "200-"] {
            assert!(
                bad.parse::<StatusSet>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            "200-299,304".parse::<StatusSet>().unwrap().to_string(),
            "200-299,304"
        );
    }
}
