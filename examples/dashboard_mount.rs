//! The dashboard mounted in a service of one's own: `pythia_dashboard::router` nested under
//! `/ops/queues` of an axum app that has routes of its own, behind a token.
//!
//! Pushes 3 messages onto `example:mounted`, serves the app on a free loopback port, then asks
//! it (as a client would) for its own `/`, for the dashboard's JSON of the queue with the token
//! and without, and for the dashboard's overview page, whose links start with the mount path;
//! prints what it got, and deletes the queue.
//!
//! Run (with a Redis at REDIS_URL, default redis://127.0.0.1:6379):
//!
//!     cargo run -p pythia-examples --example dashboard_mount

use axum::Router;
use axum::routing::get;
use pythia::Message;
use pythia::redis::{ListProducer, RedisConfig, RedisConnection};
use pythia_dashboard::{DashboardConfig, router};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const QUEUE: &str = "example:mounted";
const TOKEN: &str = "example-token-use-a-long-random-one";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let conn = RedisConnection::connect(RedisConfig::from_env()?).await?;
    let msgs: Vec<Message> = (0..3).map(|i| Message::new(format!("m{i}"))).collect();
    ListProducer::new(&conn, QUEUE).push_many(&msgs).await?;

    // The dashboard's router, told where it is mounted so that its links and redirects point
    // there; the service's own routes next to it.
    let dashboard = router(
        DashboardConfig::new(conn.clone())
            .with_base_path("/ops/queues")?
            .with_token(TOKEN)
            .with_queues([QUEUE]),
    )?;
    let app = Router::new()
        .route("/", get(|| async { "my service\n" }))
        .nest("/ops/queues", dashboard);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, body) = fetch(addr, "/", None).await?;
    println!("GET / -> {status} {}", body.trim());
    let api = "/ops/queues/api/queues/example%3Amounted";
    let (status, _) = fetch(addr, api, None).await?;
    println!("GET {api} without the token -> {status}");
    let (status, body) = fetch(addr, api, Some(TOKEN)).await?;
    let doc: serde_json::Value = serde_json::from_str(&body)?;
    println!(
        "GET {api} -> {status} broker {} depth {}",
        doc["broker"], doc["depth"]
    );
    let (status, page) = fetch(addr, "/ops/queues", Some(TOKEN)).await?;
    let mounted = page.contains("href=\"/ops/queues/assets/dashboard.css\"");
    println!("GET /ops/queues -> {status}, links under the mount path: {mounted}");

    let mut m = conn.manager();
    let _: i64 = redis::cmd("DEL").arg(QUEUE).query_async(&mut m).await?;
    Ok(())
}

/// `GET path` on `addr` (with the token as a bearer header): the status and the body.
async fn fetch(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}
