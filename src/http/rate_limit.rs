//! Rate limits (API.md, "Limits"): requests per key, and requests without a valid token per
//! client address. Each is a GCRA bucket per key or address, in memory on this node: a
//! minute's quota may be spent at once, and comes back evenly over the minute.
//!
//! A failed authentication is any request to an authenticated route that carries no valid
//! token — missing, malformed, unknown, expired or revoked alike: each is a 401, and beyond
//! the address's quota a 429. A valid token is never counted against its address, so clients
//! behind one proxy cannot lock each other out.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use super::errors::ApiError;
use super::Limits;
use crate::telemetry;

type Buckets<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// How often buckets that are full again are forgotten, so that the many addresses and keys
/// seen once do not stay in memory: a bucket untouched for its quota's minute is full, the
/// same as one never made.
pub(crate) const FORGET_FULL_BUCKETS_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct RateLimits {
    per_key: Option<Limited<Uuid>>,
    failures_per_client: Option<Limited<IpAddr>>,
}

/// One quota, and a bucket under it per key or client.
struct Limited<K: std::hash::Hash + Eq + Clone> {
    quota: Quota,
    buckets: Buckets<K>,
}

/// Where a key stands against its quota, as the `RateLimit-*` fields of every answer to it
/// say: the quota, what is left of it, and the whole seconds until all of it is back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Standing {
    limit: u32,
    remaining: u32,
    reset: u64,
}

/// A 429: the JSON:API error, with `Retry-After`, and the key's standing when a key's quota
/// is what ran out.
pub(crate) struct TooManyRequests {
    error: ApiError,
    retry_after: u64,
    standing: Option<Standing>,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        if let Some(standing) = self.standing {
            standing.write(response.headers_mut());
        }
        response
    }
}

impl<K: std::hash::Hash + Eq + Clone> Limited<K> {
    /// `None` for 0 a minute: no limit.
    fn per_minute(requests: u32) -> Option<Self> {
        let quota = Quota::per_minute(NonZeroU32::new(requests)?);
        Some(Limited { quota, buckets: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>() })
    }

    fn forget_full_buckets(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

/// Whole seconds, rounded up: a client that waits that long is not refused again.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The bucket an address's failures count in: an IPv6 client usually holds a whole /64 and
/// could step through it, so its addresses share one; an IPv4 client seen through an
/// IPv6 socket is its IPv4 address.
fn client(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl RateLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        RateLimits { per_key: Limited::per_minute(limits.rate_limit), failures_per_client: Limited::per_minute(limits.auth_failure_limit) }
    }

    /// A request authenticated as `key`: its standing (none when keys are not limited), or a
    /// 429 beyond the key's quota.
    pub(crate) fn request_by(&self, key: Uuid) -> Result<Option<Standing>, TooManyRequests> {
        let Some(Limited { quota, buckets }) = &self.per_key else {
            return Ok(None);
        };
        let limit = quota.burst_size().get();
        let interval = quota.replenish_interval();
        match buckets.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Ok(Some(Standing { limit, remaining, reset: whole_seconds(interval * (limit - remaining)) }))
            }
            Err(not_until) => {
                metrics::counter!(telemetry::RATE_LIMITED, "limit" => "key").increment(1);
                let wait = not_until.wait_time_from(buckets.clock().now());
                let retry_after = whole_seconds(wait).max(1);
                let standing = Standing { limit, remaining: 0, reset: whole_seconds(wait + interval * (limit - 1)).max(retry_after) };
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests",
                    format!("This key may make {limit} requests a minute; try again in {retry_after} s."),
                );
                Err(TooManyRequests { error, retry_after, standing: Some(standing) })
            }
        }
    }

    /// A request without a valid token from `address` (none: not known, not counted): 401,
    /// or 429 once the address has failed more often than its quota allows.
    pub(crate) fn failed_authentication(&self, address: Option<IpAddr>) -> Response {
        let (Some(Limited { buckets, .. }), Some(address)) = (&self.failures_per_client, address) else {
            return ApiError::unauthorized().into_response();
        };
        match buckets.check_key(&client(address)) {
            Ok(_) => ApiError::unauthorized().into_response(),
            Err(not_until) => {
                metrics::counter!(telemetry::RATE_LIMITED, "limit" => "client_address").increment(1);
                let retry_after = whole_seconds(not_until.wait_time_from(buckets.clock().now())).max(1);
                let error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests",
                    format!(
                        "Too many requests without a valid token from this address; send a valid token, or try again in {retry_after} s."
                    ),
                );
                TooManyRequests { error, retry_after, standing: None }.into_response()
            }
        }
    }

    /// Forgets the buckets that are full again (see [`FORGET_FULL_BUCKETS_EVERY`]).
    pub(crate) fn forget_full_buckets(&self) {
        if let Some(limited) = &self.per_key {
            limited.forget_full_buckets();
        }
        if let Some(limited) = &self.failures_per_client {
            limited.forget_full_buckets();
        }
    }
}

impl Standing {
    fn write(self, headers: &mut HeaderMap) {
        for (name, value) in [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// Where the authentication of a request leaves its key's [`Standing`], for
/// [`standing_fields`] to write on the answer: the extractor that authenticates cannot reach
/// the response, and every answer to an authenticated request carries the fields — an
/// error of the handler's as much as a 429.
#[derive(Clone, Default)]
pub(crate) struct StandingSlot(Arc<OnceLock<Standing>>);

impl StandingSlot {
    /// A request is authenticated once, so the slot is filled at most once; a second
    /// standing would be the same request's and is dropped.
    pub(crate) fn fill(&self, standing: Standing) {
        let _ = self.0.set(standing);
    }
}

/// The middleware that writes `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
/// on the answer to every authenticated request.
pub(crate) async fn standing_fields(mut request: Request, next: Next) -> Response {
    let slot = StandingSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let Some(standing) = slot.0.get() {
        standing.write(response.headers_mut());
    }
    response
}
