//! A panicking handler must answer a JSON:API 500 that says nothing of the panic.

use axum::routing::get;
use axum::Router;

#[tokio::test]
async fn a_panic_in_a_handler_becomes_a_json_api_500_without_internals() {
    let routes = Router::new().route(
        "/boom",
        get(|| async {
            let secret = std::hint::black_box("rootly_deadbeef internal detail");
            if !secret.is_empty() {
                panic!("handler failed near {secret}");
            }
            "unreachable"
        }),
    );
    let app = keyledger::http::harden(routes, &keyledger::http::Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let response = reqwest::get(format!("http://{address}/boom")).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "application/vnd.api+json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body = response.text().await.unwrap();
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["errors"][0]["status"], "500");
    assert!(!body.contains("rootly_") && !body.contains("internal detail"), "{body}");
    // The server keeps serving after a panic.
    assert_eq!(reqwest::get(format!("http://{address}/boom")).await.unwrap().status(), 500);
}
