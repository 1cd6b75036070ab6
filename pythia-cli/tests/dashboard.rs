//! `pythia dashboard` against a real redis-server: the JSON API's numbers against the state
//! made in Redis and against `pythia inspect --json` / `pythia dlq list --json`, replay and
//! delete through the API and the forms, the CSRF, origin, host and token checks, and escaping
//! in the pages. Each dashboard listens on a free port (`--addr 127.0.0.1:0`, read back from
//! its first line of output).

mod common;
use pythia_test_support as support;

use common::{command, produce, pythia, pythia_on, run_burst};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use pythia::{Message, envelope};
use serde_json::Value as Json;
use support::{RedisServer, burst, cmd};

/// A dashboard process, killed when dropped (none: a router served by the test itself).
struct Dashboard {
    child: Option<Child>,
    /// `127.0.0.1:<port>`.
    addr: String,
}

impl Dashboard {
    fn start(redis_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut c = command([
            "dashboard",
            "--redis-url",
            redis_url,
            "--addr",
            "127.0.0.1:0",
            "--interval",
            "200ms",
        ]);
        c.args(extra)
            .env_remove("PYTHIA_KEY_PREFIX")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn pythia dashboard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("serving http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self {
            child: Some(child),
            addr,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, None)
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        self.request("POST", path, headers, Some(body))
    }

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Response {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        Response::parse(&raw)
    }

    fn json(&self, path: &str) -> Json {
        let r = self.get(path, &[]);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    fn csrf(&self, headers: &[(&str, &str)]) -> String {
        let r = self.get("/api/csrf", headers);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["csrf_token"].as_str().unwrap().to_owned()
    }

    /// Polls the overview until `queue`'s row satisfies `ok`.
    fn wait_row(&self, queue: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let doc = self.json("/api/overview");
            let row = doc["queues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|q| q["queue"] == queue)
                .cloned();
            if let Some(r) = row.filter(|r| ok(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {queue}: {what}; last overview: {doc}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad response: {text}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Self {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn ok_json(o: &Output) -> Json {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Pushes dead letters of `queue` directly, as a worker writes them.
async fn dead_letters(conn: &pythia::redis::RedisConnection, queue: &str, bodies: &[&[u8]]) {
    for b in bodies {
        let m = Message::new(b.to_vec()).with_attempt(3);
        let raw = envelope::encode_dead_letter(&m, "boom <b>bold</b>", SystemTime::now());
        let key = format!("pythia:{{{queue}}}:dlq");
        let mut mgr = conn.manager();
        let _: i64 = redis::cmd("LPUSH")
            .arg(&key)
            .arg(raw)
            .query_async(&mut mgr)
            .await
            .unwrap();
    }
}

/// The `inspect` document without what changes from one read to the next.
fn stable(mut doc: Json) -> Json {
    doc["oldest_age_seconds"] = Json::Null;
    doc["memory_bytes"] = Json::Null;
    if let Some(cs) = doc["consumers"].as_array_mut() {
        for c in cs {
            c["heartbeat_ttl_ms"] = Json::Null;
        }
    }
    doc
}

#[tokio::test]
async fn api_reports_what_redis_holds_like_inspect_and_dlq_list() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    // 3 dead-lettered by a worker whose handler rejects everything, then 7 waiting.
    let o = produce(&url, &["--queue", "emails", "a", "b", "c"]);
    assert!(o.status.success());
    let o = run_burst(
        &url,
        &["--queue", "emails", "--exec", "exit 65", "--log", "error"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = produce(&url, &["--queue", "emails", "--count", "7"]);
    assert!(o.status.success());
    // A list nobody ever failed on leaves no key of Pythia's: shown because --queue names it.
    let _: i64 = cmd(&conn, &["RPUSH", "plain", "x", "y"]).await;
    // A lock alone is not a queue.
    let _: String = cmd(&conn, &["SET", "pythia:{mutex}:lock", "me"]).await;

    let d = Dashboard::start(&url, &["--queue", "plain"], &[]);
    let row = d.wait_row("emails", "depth 7, 3 dead letters", |r| {
        r["depth"] == 7 && r["dead_letters"] == 3
    });
    assert_eq!(row["broker"], "list");
    assert_eq!(row["in_flight"], 0);
    assert!(!row["history"]["t_ms"].as_array().unwrap().is_empty());
    d.wait_row("plain", "depth 2", |r| r["depth"] == 2);
    let overview = d.json("/api/overview");
    assert!(
        !overview["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["queue"] == "mutex"),
        "a lock is not a queue: {overview}"
    );
    assert_eq!(overview["circuit_breakers"]["shared_in_redis"], false);

    // Rates appear once there are two samples: nothing moved, so 0.
    let row = d.wait_row("emails", "rates", |r| r["net_drain_per_second"].is_number());
    assert_eq!(row["net_drain_per_second"], 0.0);
    assert_eq!(row["dead_lettered_per_second"], 0.0);
    let h = d.json("/api/queues/emails/history");
    assert_eq!(h["history"]["depth"].as_array().unwrap().last().unwrap(), 7);

    // The queue document is `pythia inspect --json`'s.
    let api = d.json("/api/queues/emails");
    let cli = ok_json(&pythia_on(
        &url,
        "inspect",
        &["--queue", "emails", "--json"],
    ));
    assert_eq!(stable(api), stable(cli));

    // The dead letters are `pythia dlq list --json`'s, plus body_binary/body_hex.
    let api = d.json("/api/queues/emails/dlq");
    let cli = ok_json(&pythia_on(
        &url,
        "dlq list",
        &[
            "--queue",
            "emails",
            "--json",
            "--preview",
            "200",
            "--limit",
            "50",
        ],
    ));
    assert_eq!(api["total"], 3);
    assert_eq!(api["key"], "pythia:{emails}:dlq");
    let strip = |mut v: Json| {
        for d in v["dead_letters"].as_array_mut().unwrap() {
            let o = d.as_object_mut().unwrap();
            assert_eq!(o.remove("body_binary"), Some(Json::Bool(false)));
            assert_eq!(o.remove("body_hex"), Some(Json::Null));
        }
        v
    };
    assert_eq!(strip(api), cli);
    let limited = d.json("/api/queues/emails/dlq?limit=1");
    assert_eq!(limited["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(limited["total"], 3);

    // Unknown routes and dead letters.
    let r = d.get("/api/nope", &[]);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = d.get("/api/queues/emails/dlq?limit=abc", &[]);
    assert_eq!(r.status, 400);
    drop(conn);
}

#[tokio::test]
async fn replay_and_delete_need_the_csrf_token_and_the_same_origin() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    dead_letters(&conn, "jobs", &[b"one", b"two", b"three", b"four"]).await;
    let d = Dashboard::start(&url, &[], &[]);
    let page = d.get("/queues/jobs/dlq", &[]);
    assert!(
        page.body.contains("There is no key <code>jobs</code>"),
        "a replay onto a missing key warns that a channel's would be pushed onto a list"
    );
    let json = [("Content-Type", "application/json")];
    let llen = |key: &'static str| {
        let conn = conn.clone();
        async move { cmd::<i64>(&conn, &["LLEN", key]).await }
    };

    // No token, a wrong one: 403, nothing replayed.
    let r = d.post("/api/queues/jobs/dlq/replay", &json, r#"{"all": true}"#);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("CSRF"));
    let wrong = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", "0000"),
    ];
    assert_eq!(
        d.post("/api/queues/jobs/dlq/replay", &wrong, r#"{"all": true}"#)
            .status,
        403
    );
    assert_eq!(llen("jobs").await, 0);

    // With it: back on the queue.
    let token = d.csrf(&[]);
    let with = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
    ];
    let listed = d.json("/api/queues/jobs/dlq");
    let oldest = listed["dead_letters"][3]["id"].as_str().unwrap().to_owned();
    let r = d.post(
        "/api/queues/jobs/dlq/replay",
        &with,
        &format!(r#"{{"ids": ["{oldest}"]}}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["replayed"], 1);
    assert_eq!(llen("jobs").await, 1);
    assert_eq!(llen("pythia:{jobs}:dlq").await, 3);
    let items: Vec<Vec<u8>> = cmd(&conn, &["LRANGE", "jobs", "0", "-1"]).await;
    let msg = envelope::decode(
        items[0].clone().into(),
        &pythia::Source::new("list", "jobs"),
    );
    assert_eq!((msg.body().as_ref(), msg.attempt()), (&b"one"[..], 1));

    // Replaying it again: 404, nothing done. A body that selects nothing: 400.
    let r = d.post(
        "/api/queues/jobs/dlq/replay",
        &with,
        &format!(r#"{{"ids": ["{oldest}"]}}"#),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        d.post("/api/queues/jobs/dlq/replay", &with, "{}").status,
        400
    );
    assert_eq!(
        d.post("/api/queues/jobs/dlq/replay", &with, "not json")
            .status,
        400
    );

    // The right token from another origin: 403.
    let cross = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(
        d.post("/api/queues/jobs/dlq/delete", &cross, r#"{"all": true}"#)
            .status,
        403
    );
    let referer = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
        ("Referer", "http://evil.example/queues/jobs/dlq"),
    ];
    assert_eq!(
        d.post("/api/queues/jobs/dlq/delete", &referer, r#"{"all": true}"#)
            .status,
        403
    );
    assert_eq!(llen("pythia:{jobs}:dlq").await, 3);

    // The confirmation page's form: without the field 403, with it a redirect and the notice.
    let form = "application/x-www-form-urlencoded";
    let same = format!("http://{}", d.addr);
    let r = d.post(
        "/queues/jobs/dlq/replay",
        &[("Content-Type", form), ("Origin", &same)],
        "all=1",
    );
    assert_eq!(r.status, 403);
    let page = d.get("/queues/jobs/dlq/confirm?action=replay", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Replay all 3 dead letters"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("There is no key"), "jobs is a list now");
    assert!(
        page.body
            .contains(&format!("name=\"csrf\" value=\"{token}\"")),
        "the form carries the CSRF token"
    );
    let r = d.post(
        "/queues/jobs/dlq/replay",
        &[("Content-Type", form), ("Origin", &same)],
        &format!("csrf={token}&all=1"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap().to_owned();
    assert_eq!(to, "/queues/jobs/dlq?replayed=3&missing=0&unheard=0");
    assert!(
        d.get(&to, &[])
            .body
            .contains("Replayed 3 dead letters onto jobs")
    );
    assert_eq!(llen("jobs").await, 4);
    assert_eq!(llen("pythia:{jobs}:dlq").await, 0);

    // Delete one, then all, through the API.
    dead_letters(&conn, "jobs", &[b"x", b"y"]).await;
    let id = d.json("/api/queues/jobs/dlq")["dead_letters"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = d.post(
        "/api/queues/jobs/dlq/delete",
        &with,
        &format!(r#"{{"ids": ["{id}"]}}"#),
    );
    assert_eq!((r.status, r.json()["deleted"].as_u64()), (200, Some(1)));
    let r = d.post("/api/queues/jobs/dlq/delete", &with, r#"{"all": true}"#);
    assert_eq!((r.status, r.json()["deleted"].as_u64()), (200, Some(1)));
    assert_eq!(llen("pythia:{jobs}:dlq").await, 0);
    assert_eq!(llen("jobs").await, 4, "deleting never touches the queue");

    // A GET never changes anything; a GET on an action is not allowed.
    assert_eq!(d.get("/queues/jobs/dlq/replay?all=1", &[]).status, 405);
}

#[tokio::test]
async fn a_token_guards_every_request() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    dead_letters(&conn, "jobs", &[b"one"]).await;
    let d = Dashboard::start(&url, &[], &[("PYTHIA_DASHBOARD_TOKEN", "s3cret")]);

    for path in ["/api/overview", "/api/queues/jobs", "/assets/dashboard.js"] {
        let r = d.get(path, &[]);
        assert_eq!(r.status, 401, "{path}");
        let r = d.get(path, &[("Authorization", "Bearer wrong")]);
        assert_eq!(r.status, 401, "{path} with a wrong token");
        let r = d.get(path, &[("Authorization", "Bearer s3cret")]);
        assert_eq!(r.status, 200, "{path} with the token: {}", r.body);
    }
    assert_eq!(
        d.get("/api/overview", &[]).header("www-authenticate"),
        Some("Bearer")
    );
    // A page without the token: the login form.
    let r = d.get("/queues/jobs/dlq", &[]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("action=\"/login\""), "{}", r.body);
    assert!(
        !r.body.contains("redis://") && !r.body.contains("csrf"),
        "a stranger learns nothing: {}",
        r.body
    );

    // ?token= logs in: a session cookie (not the token), and the token leaves the address.
    let r = d.get("/queues/jobs/dlq?token=wrong", &[]);
    assert_eq!(r.status, 401);
    let r = d.get("/queues/jobs/dlq?limit=5&token=s3cret", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/queues/jobs/dlq?limit=5"));
    // However the parameter's name is percent-encoded (repro/e13_dashboard.sh).
    for query in ["%74oken=s3cret&limit=5", "limit=5&tok%65n=s3cret"] {
        let r = d.get(&format!("/queues/jobs/dlq?{query}"), &[]);
        assert_eq!(r.status, 303, "{query}");
        assert_eq!(
            r.header("location"),
            Some("/queues/jobs/dlq?limit=5"),
            "{query}"
        );
    }
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("s3cret"), "{cookie}");
    assert!(cookie.contains("; Path=/;"), "at the root: {cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = d.get("/queues/jobs/dlq", &[("Cookie", &session)]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Dead letters of jobs"));
    let r = d.get("/api/overview", &[("Cookie", "pythia_dashboard=s3cret")]);
    assert_eq!(r.status, 401, "the token is not a session");

    // The login form works too; a wrong token does not.
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", &*format!("http://{}", d.addr)),
    ];
    let r = d.post("/login", &form, "token=nope&next=%2F");
    assert_eq!(r.status, 401);
    let r = d.post("/login", &form, "token=s3cret&next=%2F%2Fevil.example");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"), "no open redirect");
    assert!(r.header("set-cookie").is_some());

    // A POST needs the token as well as the CSRF token.
    let csrf = d.csrf(&[("Authorization", "Bearer s3cret")]);
    let r = d.post(
        "/api/queues/jobs/dlq/replay",
        &[
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        r#"{"all": true}"#,
    );
    assert_eq!(r.status, 401);
    let r = d.post(
        "/api/queues/jobs/dlq/replay",
        &[
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
            ("Authorization", "Bearer s3cret"),
        ],
        r#"{"all": true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["replayed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_base_path_the_session_cookie_is_sent_back_there_only() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let config = pythia_dashboard::DashboardConfig::new(conn)
        .with_local_addr(local)
        .with_token("s3cret")
        .with_base_path("/ops/queues/")
        .unwrap();
    // Served at the root: what is checked is what the router answers, nested or not.
    let app = pythia_dashboard::router(config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(pythia_dashboard::serve(listener, app, async {
        let _ = stopped.await;
    }));
    let d = Dashboard {
        child: None,
        addr: local.to_string(),
    };
    let (login, form) = tokio::task::spawn_blocking(move || {
        let login = d.get("/queues/jobs/dlq?token=s3cret", &[]);
        let origin = format!("http://{}", d.addr);
        let form = d.post(
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", &origin),
            ],
            "token=s3cret&next=%2F",
        );
        (login, form)
    })
    .await
    .unwrap();
    for (how, r) in [("?token=", &login), ("the login form", &form)] {
        assert_eq!(r.status, 303, "{how}: {}", r.body);
        let cookie = r.header("set-cookie").unwrap_or_default();
        assert!(
            cookie.starts_with("pythia_dashboard=") && cookie.contains("; Path=/ops/queues;"),
            "{how}: {cookie}"
        );
    }
    assert_eq!(
        login.header("location"),
        Some("/ops/queues/queues/jobs/dlq")
    );
    assert_eq!(form.header("location"), Some("/ops/queues"));
    let _ = stop.send(());
    served.await.unwrap();
}

#[tokio::test]
async fn pages_escape_what_redis_holds_and_set_the_security_headers() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let script = "<script>alert(1)</script>";
    dead_letters(
        &conn,
        "<b>q</b>",
        &[script.as_bytes(), b"\xff\x00\x01binary"],
    )
    .await;
    let d = Dashboard::start(&url, &[], &[]);

    let r = d.get("/queues/%3Cb%3Eq%3C%2Fb%3E/dlq", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(script), "the body is never markup");
    assert!(!r.body.contains("<b>q</b>"), "nor the queue name");
    assert!(r.body.contains("&lt;b&gt;q&lt;/b&gt;"));
    assert!(!r.body.contains("<b>bold</b>"), "nor the error");
    assert!(
        r.body.contains("ff 00 01 62 69 6e"),
        "binary as hex: {}",
        r.body
    );
    assert!(r.body.contains("binary, 9 bytes"));
    // The only script is our own file; no inline script or style attribute.
    assert_eq!(r.body.matches("<script").count(), 1);
    assert!(
        r.body
            .contains("<script src=\"/assets/dashboard.js\" defer></script>")
    );
    assert!(!r.body.contains(" style="));
    assert!(!r.body.contains(" onclick="));

    for path in ["/", "/queues/%3Cb%3Eq%3C%2Fb%3E", "/api/overview", "/nope"] {
        let r = d.get(path, &[]);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp:?}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    }
    let js = d.get("/assets/dashboard.js", &[]);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        !js.body.contains("innerHTML"),
        "the script never parses HTML"
    );

    // The JSON API has the body as it is (JSON, not HTML, with nosniff).
    let doc = d.json("/api/queues/%3Cb%3Eq%3C%2Fb%3E/dlq");
    let bodies: Vec<&str> = doc["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["body"].as_str().unwrap())
        .collect();
    assert!(bodies.contains(&script));

    // DNS rebinding: another Host than the loopback address is refused.
    let r = d.get("/api/overview", &[("Host", "rebound.example:80")]);
    assert_eq!(r.status, 400);
    let port = d.addr.rsplit(':').next().unwrap();
    let r = d.get("/api/overview", &[("Host", &format!("localhost:{port}"))]);
    assert_eq!(r.status, 200);
}

#[test]
fn another_address_than_loopback_needs_a_token() {
    let o = pythia_on("redis://127.0.0.1:1", "dashboard", &["--addr", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("without --token"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = pythia(&["dashboard", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for want in [
        "/api/overview",
        "/api/queues/<queue>/dlq/replay",
        "X-CSRF-Token",
        "Authorization: Bearer",
    ] {
        assert!(help.contains(want), "--help lacks {want}");
    }
}

/// On a Redis Cluster the dashboard finds queues on every master (SCAN of each) and reads each
/// queue from the node that holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_finds_queues_on_every_master_of_a_cluster() {
    let cluster = support::cluster::RedisCluster::start();
    let conn = cluster.connect().await;
    let queues = cluster.names_on_different_masters("dash", 3);
    for (i, q) in queues.iter().enumerate() {
        let bodies: Vec<Vec<u8>> = (0..=i).map(|n| format!("dead {n}").into_bytes()).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        dead_letters(&conn, q, &refs).await;
    }
    let dash = Dashboard::start(&cluster.seed_urls(), &["--cluster"], &[]);
    for (i, q) in queues.iter().enumerate() {
        let row = dash.wait_row(q, "its dead letters", |r| {
            r["dead_letters"] == (i + 1) as u64
        });
        assert!(row["error"].is_null(), "{row}");
    }
}

#[tokio::test]
async fn queues_show_from_their_first_message_with_counters_and_a_pause_toggle() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let d = Dashboard::start(&url, &[], &[]);
    // Produced, no worker ever ran: the registry makes it visible.
    let o = produce(&url, &["--queue", "emails", "--count", "40"]);
    assert!(o.status.success(), "{o:?}");
    let row = d.wait_row("emails", "listed from the registry", |r| r["depth"] == 40);
    assert_eq!(row["paused"], false);
    assert_eq!(row["broker"], "list");

    // A worker's daily counters give the processed rate and today's count.
    let o = run_burst(&url, &["--queue", "emails", "--handler", "noop"]);
    assert!(o.status.success(), "{o:?}");
    let row = d.wait_row("emails", "processed counted", |r| {
        r["processed_today"] == 40 && r["processed_per_second"].as_f64().unwrap_or(0.0) > 0.0
    });
    assert_eq!(row["failed_today"], 0);
    let page = d.get("/", &[]);
    assert!(page.body.contains("Processed /s") && page.body.contains("Failed /s"));

    // The toggle: a form POST needs the CSRF token.
    let same = format!("http://{}", d.addr);
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", same.as_str()),
    ];
    let page = d.get("/queues/emails", &[]);
    assert!(
        page.body.contains("id=\"pause-state\">running"),
        "{}",
        page.body
    );
    assert!(page.body.contains("action=\"/queues/emails/pause\""));
    let r = d.post("/queues/emails/pause", &form, "csrf=0000");
    assert_eq!(r.status, 403, "{}", r.body);
    let flag = |conn: pythia::redis::RedisConnection| async move {
        cmd::<i64>(&conn, &["EXISTS", "pythia:{emails}:paused"]).await
    };
    assert_eq!(flag(conn.clone()).await, 0);
    let token = d.csrf(&[]);
    let r = d.post("/queues/emails/pause", &form, &format!("csrf={token}"));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/queues/emails"));
    assert_eq!(flag(conn.clone()).await, 1);
    let page = d.get("/queues/emails", &[]);
    assert!(
        page.body.contains("id=\"pause-state\">paused"),
        "{}",
        page.body
    );
    assert!(page.body.contains("action=\"/queues/emails/resume\""));
    d.wait_row("emails", "paused shown", |r| r["paused"] == true);

    // The API resumes it with the token in a header.
    let json = [
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", token.as_str()),
    ];
    let r = d.post("/api/queues/emails/resume", &json, "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["paused"], false);
    assert_eq!(flag(conn.clone()).await, 0);
    d.wait_row("emails", "running again", |r| r["paused"] == false);
}

#[tokio::test]
async fn a_jobs_page_shows_its_record_and_timeline() {
    use pythia::redis::{
        JobHandle, JobStatusStore, JobTracking, JobTrackingExt, ListProducer, ReliableListBroker,
    };
    use pythia::{Message, WorkerError, worker_fn};
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let job = Message::new("report.csv").with_id("job-<1>");
    JobStatusStore::new(&conn, "imports")
        .record_queued(std::slice::from_ref(&job))
        .await
        .unwrap();
    ListProducer::new(&conn, "imports")
        .push_many(std::slice::from_ref(&job))
        .await
        .unwrap();
    let worker = worker_fn(|msg: Message| async move {
        let job = JobHandle::of(&msg).ok_or_else(|| WorkerError::reject("no tracking"))?;
        job.event(
            "imported",
            serde_json::json!({ "rows": 7, "file": "<b>x</b>" }),
        )
        .await?;
        job.progress(100).await?;
        Ok(())
    });
    burst(ReliableListBroker::new(&conn, "imports"), worker)
        .with_job_status(JobTracking::new(&conn))
        .run()
        .await
        .unwrap();
    let d = Dashboard::start(&url, &[], &[]);
    // The queue page's look-up form leads to the job's page.
    let page = d.get("/queues/imports", &[]);
    assert!(
        page.body.contains("action=\"/queues/imports/job\""),
        "{}",
        page.body
    );
    let r = d.get("/queues/imports/job?id=job-%3C1%3E", &[]);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/queues/imports/jobs/job-%3C1%3E")
    );
    let page = d.get("/queues/imports/jobs/job-%3C1%3E", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("id=\"job-state\">succeeded"),
        "{}",
        page.body
    );
    for kind in ["queued", "started", "imported", "progress", "succeeded"] {
        assert!(
            page.body
                .contains(&format!("<td class=\"event\">{kind}</td>")),
            "{kind} missing: {}",
            page.body
        );
    }
    // Everything from Redis is escaped.
    assert!(page.body.contains("job-&lt;1&gt;") && !page.body.contains("<b>x</b>"));
    let api = d.get("/api/queues/imports/jobs/job-%3C1%3E", &[]).json();
    assert_eq!(api["state"], "succeeded");
    assert_eq!(api["progress"], "100%");
    let kinds: Vec<&str> = api["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["queued", "started", "imported", "progress", "succeeded"]
    );
    assert_eq!(d.get("/queues/imports/jobs/nope", &[]).status, 404);
    assert_eq!(d.get("/api/queues/imports/jobs/nope", &[]).status, 404);
}
