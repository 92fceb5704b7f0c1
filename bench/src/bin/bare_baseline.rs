//! `bare-baseline`: the "bare axum" ceiling that keyledger's performance targets are ratios of.
//!
//! Two routes, no auth, no storage:
//! - `POST /v1/api_keys` decodes the same JSON:API document a create sends into a serde struct
//!   and answers 201 with a small JSON:API document;
//! - `GET /v1/api_keys/{id}` answers 200 with a small fixed JSON:API document.
//!
//! Usage: `bare-baseline [ADDR]` (default `127.0.0.1:8090`).

use axum::{
    body::Bytes,
    extract::Path,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use serde::{Deserialize, Serialize};

const JSON_API: &str = "application/vnd.api+json";
const DEFAULT_ADDR: &str = "127.0.0.1:8090";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDocument {
    data: CreateData,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateData {
    #[serde(rename = "type")]
    kind: String,
    attributes: CreateAttributes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAttributes {
    name: String,
    kind: String,
    expires_at: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Serialize)]
struct CreatedDocument<'a> {
    data: CreatedData<'a>,
}

#[derive(Serialize)]
struct CreatedData<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    attributes: CreatedAttributes<'a>,
}

#[derive(Serialize)]
struct CreatedAttributes<'a> {
    name: &'a str,
    kind: &'a str,
    expires_at: &'a str,
    description: Option<&'a str>,
}

const FIXED_ID: &str = "00000000-0000-4000-8000-000000000000";

const FIXED_KEY: &str = concat!(
    r#"{"data":{"id":"00000000-0000-4000-8000-000000000000","type":"api_keys","attributes":{"#,
    r#""name":"bench","kind":"personal","created_at":"2025-01-01T00:00:00Z","#,
    r#""updated_at":"2025-01-01T00:00:00Z","description":null,"role_id":null,"#,
    r#""on_call_role_id":null,"expires_at":"2030-01-01T00:00:00Z","last_used_at":null,"#,
    r#""grace_period_ends_at":null}}}"#
);

fn json_api(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (status, [(header::CONTENT_TYPE, JSON_API)], body.into()).into_response()
}

async fn create(body: Bytes) -> Response {
    let doc: CreateDocument = match serde_json::from_slice(&body) {
        Ok(doc) => doc,
        Err(_) => return json_api(StatusCode::BAD_REQUEST, r#"{"errors":[{"status":"400","title":"Body is not valid JSON"}]}"#),
    };
    if doc.data.kind != "api_keys" {
        return json_api(StatusCode::UNPROCESSABLE_ENTITY, r#"{"errors":[{"status":"422","title":"Type must be api_keys"}]}"#);
    }
    let a = &doc.data.attributes;
    let out = CreatedDocument {
        data: CreatedData {
            id: FIXED_ID,
            kind: "api_keys",
            attributes: CreatedAttributes {
                name: &a.name,
                kind: &a.kind,
                expires_at: &a.expires_at,
                description: a.description.as_deref(),
            },
        },
    };
    match serde_json::to_vec(&out) {
        Ok(bytes) => json_api(StatusCode::CREATED, bytes),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn show(Path(_id): Path<String>) -> Response {
    json_api(StatusCode::OK, FIXED_KEY)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let app = Router::new().route("/v1/api_keys", post(create)).route("/v1/api_keys/{id}", get(show));
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-baseline: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("bare-baseline listening on {addr}");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("bare-baseline: server error: {e}");
        std::process::exit(1);
    }
}
