//! How each original table maps onto its new one (`Plan`): which columns, converted how, and
//! what every converted row must satisfy (the new table's NOT NULL and CHECK constraints), so
//! that the rows that cannot be converted are named before anything is copied (`copy`).
//!
//! Conversions: a `timestamp without time zone` column whose new type is `timestamptz` is read
//! in the adoption's zone (`col AT TIME ZONE 'zone'`); everything else goes by PostgreSQL's
//! assignment casts (`numeric(5,2)` -> double precision, integer -> bigint, same varchars).
//! A past event (`created_at`, `last_health_check`, ...) that would land in the future is a
//! sign of the wrong zone, and stops the adoption like any other row that cannot be converted.

use sqlx::PgConnection;
use sqlx::migrate::MigrateError;

use super::{ASIDE, TIMEZONE_SETTING, ident, refuse};

/// Columns that record something that has happened: never later than now.
const PAST_EVENTS: [&str; 6] = [
    "created_at",
    "updated_at",
    "last_health_check",
    "last_used_at",
    "validated_at",
    "timestamp",
];

/// How one original table maps onto its new one.
pub(super) struct Plan {
    pub(super) table: &'static str,
    /// New column names, in the order of `exprs`.
    pub(super) columns: Vec<String>,
    /// Each column's value from the original row (`o`), converted.
    pub(super) exprs: Vec<String>,
    /// What must hold of a converted row (`x`): (condition that is true when it fails, why).
    rules: Vec<(String, String)>,
    /// The original table's primary key columns, e.g. `(id)`, and a row's values of them.
    key_columns: String,
    key: String,
}

/// Per original column: name, type, generated?; and of the new column of that name, if any:
/// type, NOT NULL, generated.
type ColumnRow = (String, String, bool, Option<String>, bool, bool);

pub(super) async fn plan(
    conn: &mut PgConnection,
    table: &'static str,
    zone: &str,
) -> Result<Plan, MigrateError> {
    let old = format!("{}.{}", ident(ASIDE), ident(table));
    let new = format!("public.{}", ident(table));
    let cols: Vec<ColumnRow> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '',
                format_type(n.atttypid, n.atttypmod), coalesce(n.attnotnull, false),
                coalesce(n.attgenerated <> '', false)
           FROM pg_attribute a
           LEFT JOIN pg_attribute n ON n.attrelid = $2::regclass AND n.attname = a.attname
                                   AND n.attnum > 0 AND NOT n.attisdropped
          WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(&old)
    .bind(&new)
    .fetch_all(&mut *conn)
    .await?;
    let mut p = Plan {
        table,
        columns: Vec::new(),
        exprs: Vec::new(),
        rules: Vec::new(),
        key_columns: String::new(),
        key: String::new(),
    };
    for (name, old_type, old_generated, new_type, not_null, new_generated) in cols {
        let Some(new_type) = new_type else {
            return Err(refuse(format!(
                "column {table}.{name} ({old_type}) has no place in the new table; its values \
                 would be lost"
            )));
        };
        if old_generated || new_generated {
            continue; // created_date: computed again from the converted "timestamp"
        }
        let col = ident(&name);
        let zoned =
            old_type == "timestamp without time zone" && new_type == "timestamp with time zone";
        p.exprs.push(if zoned {
            format!("(o.{col} AT TIME ZONE {})", literal(zone))
        } else {
            format!("o.{col}")
        });
        if zoned && PAST_EVENTS.contains(&name.as_str()) {
            // Read in the wrong zone, recent events land in the future; a status row checked
            // "later than now" would also hold back the daemon's writes until then.
            p.rules.push((
                format!("x.{col} > now() + interval '1 minute'"),
                format!(
                    "{name} is in the future once read in zone {zone} (is {TIMEZONE_SETTING} \
                     the zone these TIMESTAMPs were written in?)"
                ),
            ));
        }
        if not_null {
            p.rules.push((
                format!("x.{col} IS NULL"),
                format!("{name} is NULL, which the new table does not allow"),
            ));
        }
        p.columns.push(name);
    }
    // The new table's CHECK constraints over columns the original had (new columns take their
    // defaults, which satisfy them).
    let checks: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT c.conname::text, pg_get_expr(c.conbin, c.conrelid),
                coalesce((SELECT bool_and(a.attname::text = ANY ($2))
                   FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)), false)
           FROM pg_constraint c WHERE c.conrelid = $1::regclass AND c.contype = 'c'",
    )
    .bind(&new)
    .bind(&p.columns)
    .fetch_all(&mut *conn)
    .await?;
    for (name, expr, applies) in checks {
        if applies {
            p.rules.push((
                format!("({expr}) IS FALSE"),
                format!("violates {name}: {expr}"),
            ));
        }
    }
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text
           FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord",
    )
    .bind(&old)
    .fetch_all(&mut *conn)
    .await?;
    (p.key_columns, p.key) = if key.is_empty() {
        ("ctid".to_owned(), "o.ctid::text".to_owned())
    } else {
        let cols: Vec<String> = key.iter().map(|k| format!("o.{}", ident(k))).collect();
        (
            format!("({})", key.join(", ")),
            format!("row({})::text", cols.join(", ")),
        )
    };
    Ok(p)
}

impl Plan {
    fn select(&self) -> String {
        let list: Vec<String> = self
            .exprs
            .iter()
            .zip(&self.columns)
            .map(|(e, c)| format!("{e} AS {}", ident(c)))
            .collect();
        format!(
            "SELECT {}, {} AS __key FROM {}.{} o",
            list.join(", "),
            self.key,
            ident(ASIDE),
            ident(self.table)
        )
    }

    pub(super) fn insert(&self, filter: &str) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| ident(c)).collect();
        format!(
            "INSERT INTO public.{} ({}) SELECT {} FROM {}.{} o {filter}",
            ident(self.table),
            cols.join(", "),
            self.exprs.join(", "),
            ident(ASIDE),
            ident(self.table)
        )
    }

    /// One line per rule that some rows fail: how many, and the first few rows' keys.
    pub(super) async fn problems(&self, conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
        if self.rules.is_empty() {
            return Ok(Vec::new());
        }
        let cases: Vec<String> = self
            .rules
            .iter()
            .map(|(fails, why)| format!("CASE WHEN {fails} THEN {} END", literal(why)))
            .collect();
        let sql = format!(
            "SELECT why, count(*), (array_agg(x.__key ORDER BY x.__key))[1:3]
               FROM ({}) x CROSS JOIN LATERAL unnest(ARRAY[{}]) AS why
              WHERE why IS NOT NULL GROUP BY why ORDER BY why",
            self.select(),
            cases.join(", ")
        );
        let rows: Vec<(String, i64, Vec<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(why, n, keys)| {
                let more = if n > keys.len() as i64 { ", ..." } else { "" };
                format!(
                    "{}: {why}; {n} row(s): {}={}{more}",
                    self.table,
                    self.key_columns,
                    keys.join(", ")
                )
            })
            .collect())
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
