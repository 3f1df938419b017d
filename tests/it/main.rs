//! End-to-end tests: the real binary, the real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), one fresh database per test.

mod helpers;

mod analytics_partitions;
mod config_check;
mod legacy_migration;
mod migrations;
