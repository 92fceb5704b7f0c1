//! The accept loop of `serve`: hyper's HTTP/1 connections under the connection limits of
//! [`Limits`], each request told its peer's address (`ConnectInfo`, for the rate limit of
//! failed authentications), and a graceful shutdown that lets the requests in flight finish.
//!
//! hyper times the wait for a request's headers from the moment a connection is ready for
//! its next request, so on a kept-alive connection that timer covers the idle time before
//! the request too: an idle connection is closed after the shorter of the header and idle
//! timeouts.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service as _;

use super::exposition;
use super::rate_limit::{RateLimits, FORGET_FULL_BUCKETS_EVERY};
use super::{router, Limits};
use crate::service::Service;

/// Serves the API on `listener` until `shutdown` completes, then stops accepting and waits
/// for the connections it has (an idle one closes at once, a busy one after its request).
/// At most `limits.max_connections` connections are served at once: the next one is accepted
/// only when one of them closes, and waits in the listen backlog until then. `GET /metrics`
/// renders `metrics`, the handle of the recorder installed by [`crate::telemetry::install`].
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    limits: &Limits,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) {
    let rate_limits = Arc::new(RateLimits::new(limits));
    let housekeeping = tokio::spawn(forget_full_buckets(Arc::clone(&rate_limits)));
    let upkeep = tokio::spawn(exposition::upkeep(metrics.clone()));
    let app = router(service, rate_limits, metrics, limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout.min(limits.idle_timeout));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    refused(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let requests = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), requests));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    housekeeping.abort();
    upkeep.abort();
}

/// A failed accept. One connection's failure is that connection's; anything else (out of
/// file descriptors, most often) is logged and waited out for a second, as hyper and axum
/// do, rather than retried in a tight loop.
async fn refused(error: io::Error) {
    if matches!(error.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn forget_full_buckets(rate_limits: Arc<RateLimits>) {
    let mut every = tokio::time::interval(FORGET_FULL_BUCKETS_EVERY);
    loop {
        every.tick().await;
        rate_limits.forget_full_buckets();
    }
}
