//! End-to-end tests: the real binary, the real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), one fresh database per test.

mod clock;
mod daemon;
mod demo;
mod fleet;
mod helpers;
mod jobs;
mod leadership;
mod least_privilege;

mod analytics_partitions;
mod check_command;
mod cluster;
mod config_check;
mod legacy_migration;
mod migrations;
mod operator;
mod prober;
mod proxy;
mod registry_import;
mod registry_watch;
mod resilience;
mod status_command;
mod systemd;
