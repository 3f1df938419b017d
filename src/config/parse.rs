//! The file's text -> [`RawConfig`], key by key, so that every unknown key and every value of
//! the wrong type is reported, not just the first: the document is parsed to a `toml::Table`
//! and walked against the defaults (`RawConfig::default()` as a table, which lists every key
//! and its type); each value of the right type replaces its default, each problem is a
//! [`KeyError`] naming its dotted key. Values echoed in a message are cut (`text::echo`).

use toml::{Table, Value};

use super::{ConfigError, KeyError, RawConfig};
use crate::text::{ECHO_CHARS, echo, escape_control};

/// The file's values over the defaults, and the problems found on the way (validation comes
/// after, seeded with these). Only a syntax error stops the parse.
pub(super) fn parse(text: &str, origin: &str) -> Result<(RawConfig, Vec<KeyError>), ConfigError> {
    let given: Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: origin.to_owned(),
            message: syntax_message(&e.to_string()),
        })?;
    let mut errors = Vec::new();
    let merged = merge(&defaults(), given, "", &mut errors);
    // Every value now has its default's type, so this cannot fail; if it ever does, it is one
    // more error rather than a panic.
    let raw = serde_path_to_error::deserialize(Value::Table(merged)).unwrap_or_else(|e| {
        errors.push(KeyError {
            key: e.path().to_string(),
            reason: e.into_inner().to_string().trim_end().to_owned(),
        });
        RawConfig::default()
    });
    Ok((raw, errors))
}

/// Every key the file may have, with its default value (so its type).
fn defaults() -> Table {
    Table::try_from(RawConfig::default()).expect("the defaults serialize to a table")
}

/// `known` with the values of `given` that have the right type; every other key of `given` is
/// an error under `prefix`.
fn merge(known: &Table, given: Table, prefix: &str, errors: &mut Vec<KeyError>) -> Table {
    let mut out = known.clone();
    for (name, value) in given {
        let key = dotted(prefix, &name);
        match known.get(&name) {
            None => errors.push(KeyError {
                reason: unknown(known),
                key,
            }),
            Some(Value::Table(inner)) => match value {
                Value::Table(table) => {
                    let merged = merge(inner, table, &key, errors);
                    out.insert(name, Value::Table(merged));
                }
                other => errors.push(KeyError {
                    reason: mismatch(&other, "a table"),
                    key,
                }),
            },
            Some(default) if default.same_type(&value) => {
                out.insert(name, value);
            }
            Some(default) => errors.push(KeyError {
                reason: mismatch(&value, expected(default)),
                key,
            }),
        }
    }
    out
}

fn dotted(prefix: &str, name: &str) -> String {
    let name = echo(name);
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}.{name}")
    }
}

/// The key path already names the unknown key; the message lists the ones that would do.
fn unknown(known: &Table) -> String {
    let names: Vec<String> = known.keys().map(|k| format!("`{k}`")).collect();
    format!("unknown key (known here: {})", names.join(", "))
}

fn expected(default: &Value) -> &'static str {
    match default {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Boolean(_) => "a boolean (true or false)",
        Value::Float(_) => "a number",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// `invalid type: string "many", expected an integer`, the value cut to [`ECHO_CHARS`].
fn mismatch(value: &Value, expected: &str) -> String {
    let found = match value {
        Value::String(s) => format!("string \"{}\"", echo(s)),
        Value::Table(_) | Value::Array(_) => format!("{} {}", article(value), value.type_str()),
        other => format!("{} `{}`", other.type_str(), echo(&other.to_string())),
    };
    format!("invalid type: {found}, expected {expected}")
}

fn article(value: &Value) -> &'static str {
    if matches!(value, Value::Array(_)) {
        "an"
    } else {
        "a"
    }
}

/// toml's message quotes the offending line; a long line is cut, control characters escaped.
fn syntax_message(message: &str) -> String {
    let cut = |line: &str| match line.char_indices().nth(2 * ECHO_CHARS) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    };
    message
        .trim_end()
        .lines()
        .map(|line| escape_control(&cut(line)).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sorts `errors` into the order of the keys in `RawConfig` (the reference file's order), so
/// problems found while parsing and while validating read as one list; unknown keys come after
/// the known ones of their table, in the file's order.
pub(super) fn in_key_order(mut errors: Vec<KeyError>) -> Vec<KeyError> {
    let defaults = defaults();
    errors.sort_by_cached_key(|e| rank(&defaults, &e.key));
    errors
}

fn rank(defaults: &Table, key: &str) -> Vec<usize> {
    let key = if key == "DATABASE_URL" {
        "database.url"
    } else {
        key
    };
    let mut out = Vec::new();
    let mut table = Some(defaults);
    for part in key.split('.') {
        let Some(t) = table else { break };
        match t.keys().position(|k| k == part) {
            Some(i) => {
                out.push(i);
                table = t.get(part).and_then(Value::as_table);
            }
            None => {
                out.push(usize::MAX);
                break;
            }
        }
    }
    out
}
