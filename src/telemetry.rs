//! The metrics keyledger exports at `GET /metrics` (Prometheus text): their names, what they
//! count, the buckets of each histogram, and the recorder that keeps them.
//!
//! Every name is defined here once, because two layers record them ([`crate::http`] the
//! requests, [`crate::service`] the writer's batches) and an operator's dashboards depend on
//! them: renaming one is a breaking change. Labels take only values from small fixed sets —
//! a route's template, never its path, so no key id ever becomes a label — because every
//! distinct label set is a series a scraper stores forever.
//!
//! Until [`install`] runs (offline commands, in-process tests) recording is a no-op.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests answered, by `route` (the matched route's template, `unmatched` for none),
/// `method` and `status`.
pub const REQUESTS: &str = "keyledger_requests_total";
/// Seconds from a request's arrival to its answer, by `route` and `method`.
pub const REQUEST_DURATION: &str = "keyledger_request_duration_seconds";
/// Commands the writer decided together in one group commit.
pub const BATCH_SIZE: &str = "keyledger_batch_size";
/// Seconds one batch's append (events, journaled rows and checkpoints) took in the store.
pub const APPEND_DURATION: &str = "keyledger_append_duration_seconds";
/// Seconds one sync took (everything appended since the last one made durable).
pub const SYNC_DURATION: &str = "keyledger_sync_duration_seconds";
/// Events this process appended to the log.
pub const EVENTS_APPENDED: &str = "keyledger_events_appended_total";
/// Requests to an authenticated route without a valid token, by `reason`: `missing` (no
/// bearer token) or `rejected` (malformed, unknown, expired, revoked or superseded).
pub const AUTHENTICATION_FAILURES: &str = "keyledger_authentication_failures_total";
/// Requests refused with a 429, by `limit`: `key` (the key's requests a minute) or
/// `client_address` (an address's requests without a valid token).
pub const RATE_LIMITED: &str = "keyledger_rate_limited_total";
/// Failed store operations, by `operation`: `append` and `sync` (each makes the writer refuse
/// changes until it has reopened the store), `reopen` (a failed attempt at that), `probe` (a
/// readiness check) and `record_last_uses`.
pub const STORE_ERRORS: &str = "keyledger_store_errors_total";
/// Times the writer reopened the store after a failed append or sync and resumed.
pub const STORE_RECOVERIES: &str = "keyledger_store_recoveries_total";
/// Events committed to the shared log that this node has not folded yet.
pub const FOLLOWER_LAG_EVENTS: &str = "keyledger_follower_lag_events";
/// Age of the oldest committed event this node has not folded yet, in seconds.
pub const FOLLOWER_LAG_SECONDS: &str = "keyledger_follower_lag_seconds";

/// The value of `route` for a request no route matched (an unknown path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Request latencies: a read answers from memory in well under a millisecond, a write waits
/// for a sync (milliseconds), and the request timeout ends everything at 30 s by default.
const REQUEST_SECONDS: &[f64] = &[0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Appends: tens of microseconds for a small batch, more for a large one or a slow store.
const APPEND_SECONDS: &[f64] = &[0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Syncs: an `fdatasync` is sub-millisecond on a battery-backed disk and tens of
/// milliseconds on a cheap one; seconds mean trouble.
const SYNC_SECONDS: &[f64] = &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Batch sizes: powers of two up to the service's `MAX_BATCH` (512).
const BATCH_COMMANDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the process-wide recorder and returns the handle `GET /metrics` renders. Every
/// histogram is a true Prometheus histogram with the buckets above (summaries cannot be
/// aggregated across nodes). Fails if a recorder is installed already.
///
/// The follower lag is set to 0: with sled the process that serves is the only writer and
/// reads its own log, so there is no follower. A node over PostgreSQL sets both gauges at
/// each look of its follower (see [`crate::service::follower`]).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        (REQUEST_DURATION, REQUEST_SECONDS),
        (APPEND_DURATION, APPEND_SECONDS),
        (SYNC_DURATION, SYNC_SECONDS),
        (BATCH_SIZE, BATCH_COMMANDS),
    ] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    register_zeros();
    Ok(handle)
}

/// Every series whose labels are known in advance, at 0: a series that appears only with
/// its first increment makes `rate()` and `increase()` miss that increment, so an alert on
/// the first store error or the first 429 would never fire.
fn register_zeros() {
    metrics::counter!(EVENTS_APPENDED).increment(0);
    for reason in ["missing", "rejected"] {
        metrics::counter!(AUTHENTICATION_FAILURES, "reason" => reason).increment(0);
    }
    for limit in ["key", "client_address"] {
        metrics::counter!(RATE_LIMITED, "limit" => limit).increment(0);
    }
    metrics::counter!(STORE_RECOVERIES).increment(0);
    for operation in ["append", "sync", "reopen", "probe", "record_last_uses"] {
        metrics::counter!(STORE_ERRORS, "operation" => operation).increment(0);
    }
    metrics::gauge!(FOLLOWER_LAG_EVENTS).set(0.0);
    metrics::gauge!(FOLLOWER_LAG_SECONDS).set(0.0);
}

/// The `# HELP` and `# TYPE` lines of every series.
fn describe() {
    describe_counter!(REQUESTS, Unit::Count, "HTTP requests answered, by route template, method and status.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Seconds from a request's arrival to its answer, by route template and method.");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Commands decided together in one group commit.");
    describe_histogram!(APPEND_DURATION, Unit::Seconds, "Seconds one batch's append to the store took.");
    describe_histogram!(SYNC_DURATION, Unit::Seconds, "Seconds one sync of the store took.");
    describe_counter!(EVENTS_APPENDED, Unit::Count, "Events this process appended to the log.");
    describe_counter!(AUTHENTICATION_FAILURES, Unit::Count, "Requests to an authenticated route without a valid token, by reason.");
    describe_counter!(RATE_LIMITED, Unit::Count, "Requests refused with 429, by the limit that refused them.");
    describe_counter!(STORE_ERRORS, Unit::Count, "Failed store operations, by operation.");
    describe_counter!(STORE_RECOVERIES, Unit::Count, "Times the writer reopened the store after a failed append or sync and resumed.");
    describe_gauge!(FOLLOWER_LAG_EVENTS, Unit::Count, "Committed events this node has not folded yet (always 0 with sled: no follower).");
    describe_gauge!(
        FOLLOWER_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest committed event this node has not folded yet (always 0 with sled)."
    );
}
