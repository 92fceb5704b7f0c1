//! The one test kit of `tests/*.rs`: the real `keyledger` binary over temporary data
//! directories, and what the tests do with it.
//!
//! - [`faultfs`]: a FUSE filesystem over a directory that fails writes and syncs on demand
//!   (`EIO`, `ENOSPC`), for a store whose disk breaks under it.
//! - [`fixtures`]: the fixture organizations (Acme, Globex): file paths, team ids, users.
//! - [`server`]: `keyledger` processes: CLI runs, `serve` (started, signalled, stopped), the
//!   data directory, and the Acme + Globex ledger built once per test binary and copied.
//! - [`http`]: requests to a server and their whole responses.
//! - [`jsonapi`]: what a JSON:API document must look like: key documents, errors, tokens.
//! - [`ledger`]: a stopped ledger read or damaged behind the service's back, as a disk or an
//!   intruder would.
//! - [`load`]: concurrent clients creating keys, and what they saw acknowledged.
//! - [`proxy`]: a TCP proxy between a node and PostgreSQL that cuts and restores its
//!   connections (PostgreSQL tests only).
//! - [`store`]: sled or PostgreSQL (`KEYLEDGER_TEST_STORE`), the schema of each data
//!   directory on PostgreSQL, and the tests that skip there.
//!
//! Each test binary compiles the whole kit and uses part of it.
#![allow(dead_code)]

pub mod faultfs;
pub mod fixtures;
pub mod http;
pub mod jsonapi;
pub mod ledger;
pub mod load;
pub mod proxy;
pub mod server;
pub mod store;
