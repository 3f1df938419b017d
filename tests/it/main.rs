//! End-to-end tests: the real binary, the real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), one fresh database per test.

mod clock;
mod daemon;
mod demo;
mod fleet;
mod helpers;
mod job_abort;
mod jobs;
mod leadership;
mod least_privilege;
mod recorder;
mod scripted;

mod adoption;
mod analytics_partitions;
mod app_roles;
mod check_command;
mod cluster;
mod config_check;
mod daily_rollups;
mod false_alerts;
mod faults;
mod first_contact;
mod grafana;
mod http_endpoint;
mod legacy_migration;
mod log_hygiene;
mod maintenance_command;
mod migrations;
mod operator;
mod original_compat;
mod prober;
mod proxy;
mod read_only;
mod registry_import;
mod registry_outage;
mod registry_watch;
mod reload_phase;
mod report_command;
mod resilience;
mod secrets;
mod status_command;
mod status_page;
mod systemd;
mod terminal_escape;
mod tls;
