//! How long a revoke on one node takes to be refused on another, in eventual consistency:
//! two real `keyledger serve` processes on one fresh PostgreSQL schema.
//!
//! ```sh
//! cargo build --release && \
//! KEYLEDGER_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release -p keyledger-bench --bin follower-lag -- [REVOKES]
//! ```
//!
//! REVOKES keys (default 100) are created on node A and awaited on node B; then, one at a
//! time, each is revoked on A and B is asked for it (a `GET` with the key's own token, on a
//! kept-alive connection, back to back) until it answers 401. The delay is from A's answer
//! to the revoke to B's first 401; p50, p99 and the largest are printed. (The nodes run
//! with `--auth-failure-limit 0`: a hundred 401s a minute from one address would otherwise
//! turn into 429s.) The binary is
//! `target/release/keyledger` unless `KEYLEDGER_BIN` names another; the schema is dropped at
//! the end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

const URL_VAR: &str = "KEYLEDGER_BENCH_DATABASE_URL";

/// A `serve` process, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(bin: &str, store: &[&str], data: &std::path::Path) -> anyhow::Result<Node> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--consistency", "eventual", "--auth-failure-limit", "0", "--data"])
        .arg(data)
        .args(store)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {bin}"))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let Some(line) = lines.next().transpose()? else {
            bail!("keyledger serve ended before listening");
        };
        if let Some(address) = line.strip_prefix("keyledger listening on ") {
            break address.trim().to_owned();
        }
    };
    // Keep reading stderr, so that the node never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Ok(Node { child, base })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let url = std::env::var(URL_VAR).with_context(|| format!("set {URL_VAR}, e.g. postgres://postgres@127.0.0.1:5432/test"))?;
    let revokes: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(100);
    let bin = std::env::var("KEYLEDGER_BIN").unwrap_or_else(|_| "target/release/keyledger".to_owned());
    let schema = format!("kl_lag_{}", uuid::Uuid::new_v4().simple());
    let data = std::env::temp_dir().join(&schema);
    let store = ["--database-url", url.as_str(), "--database-schema", schema.as_str()];

    let measured = (|| {
        let init = Command::new(&bin).arg("init").args(store).args(["--org", "Bench", "--owner", "owner@bench.test"]).output()?;
        if !init.status.success() {
            bail!("keyledger init failed: {}", String::from_utf8_lossy(&init.stderr));
        }
        let owner = String::from_utf8(init.stdout)?.trim().to_owned();
        let a = serve(&bin, &store, &data.join("a"))?;
        let b = serve(&bin, &store, &data.join("b"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(measure(&a, &b, &owner, revokes))
    })();
    let dropped = postgres::Client::connect(&url, postgres::NoTls)
        .and_then(|mut client| client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")));
    let _ = std::fs::remove_dir_all(&data);
    let mut delays = measured?;
    if delays.is_empty() {
        bail!("nothing measured: give a number of revokes above 0");
    }
    dropped.context("cannot drop the schema")?;
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revoke on A to 401 on B, {} revokes (eventual): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.len(),
        ms(percentile(&delays, 50.0)),
        ms(percentile(&delays, 99.0)),
        ms(percentile(&delays, 100.0)),
    );
    Ok(())
}

async fn measure(a: &Node, b: &Node, owner: &str, revokes: usize) -> anyhow::Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let mut keys = Vec::with_capacity(revokes);
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for i in 0..revokes {
        let document =
            json!({"data": {"type": "api_keys", "attributes": {"name": format!("lag {i}"), "kind": "personal", "expires_at": expires_at}}});
        let response = http
            .post(format!("{}/v1/api_keys", a.base))
            .bearer_auth(owner)
            .header("content-type", "application/vnd.api+json")
            .body(document.to_string())
            .send()
            .await?;
        if response.status() != 201 {
            bail!("create on A: {} {}", response.status(), response.text().await?);
        }
        let body: Value = response.json().await?;
        let id = body["data"]["id"].as_str().context("no id")?.to_owned();
        let token = body["data"]["attributes"]["token"].as_str().context("no token")?.to_owned();
        keys.push((id, token));
    }
    let status_on_b = |id: &str, token: &str| {
        let request = http.get(format!("{}/v1/api_keys/{id}", b.base)).bearer_auth(token);
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    };
    let deadline = Duration::from_secs(30);
    for (id, token) in &keys {
        let started = Instant::now();
        while status_on_b(id, token).await? != 200 {
            if started.elapsed() > deadline {
                bail!("B never saw key {id}");
            }
        }
    }
    let mut delays = Vec::with_capacity(revokes);
    for (id, token) in &keys {
        let response = http.delete(format!("{}/v1/api_keys/{id}", a.base)).bearer_auth(owner).send().await?;
        if response.status() != 200 {
            bail!("revoke on A: {}", response.status());
        }
        let revoked = Instant::now();
        while status_on_b(id, token).await? != 401 {
            if revoked.elapsed() > deadline {
                bail!("B still accepts key {id} after {deadline:?}");
            }
        }
        delays.push(revoked.elapsed());
    }
    Ok(delays)
}
