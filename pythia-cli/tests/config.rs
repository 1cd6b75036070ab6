//! `pythia run` settings and handlers end to end against a real redis-server: a `--config`
//! file under the environment and the flags, bad files, and the `--http` handler against a
//! small HTTP server run by the test.

mod common;
use pythia_test_support as support;

use common::{command, text};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{RedisServer, cmd};

fn pythia(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command(args);
    for v in [
        "REDIS_URL",
        "PYTHIA_QUEUE",
        "PYTHIA_CONFIG",
        "PYTHIA_MAX_ATTEMPTS",
        "PYTHIA_BROKER",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

/// A file in a fresh temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pythia-cli-config-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test]
async fn config_file_sits_under_env_and_flags() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    for q in ["from-file", "from-env", "from-flag"] {
        let o = pythia(&["produce", "--redis-url", &url, "--queue", q, "x"], &[]);
        assert!(o.status.success(), "{}", text(&o));
    }
    // Every handler run fails; max_attempts = 1 from the file dead-letters at the first failure.
    let file = TempFile::new(
        "pythia.toml",
        &format!(
            "# settings of a worker\nredis_url = \"{url}\"\nqueue = \"from-file\"\n\
             max-attempts = 1\nretry_delay = \"10ms\"\nexec = \"exit 1\"\nburst = true\n\
             concurrency = 2\nmetrics_addr = \"off\"\nlog = \"warn\"\n"
        ),
    );
    let depth = |q: &'static str| {
        let conn = conn.clone();
        async move {
            let n: i64 = cmd(&conn, &["LLEN", q]).await;
            let d: i64 = cmd(&conn, &["LLEN", &format!("pythia:{{{q}}}:dlq")]).await;
            (n, d)
        }
    };

    // The file alone.
    let o = pythia(
        &["run", "--config", file.path(), "--metrics-addr", "off"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("dead-lettered 1"), "{}", text(&o));
    assert_eq!(depth("from-file").await, (0, 1));
    assert_eq!(depth("from-env").await, (1, 0));

    // The environment (PYTHIA_CONFIG too) over the file.
    let o = pythia(
        &["run", "--metrics-addr", "off"],
        &[("PYTHIA_CONFIG", file.path()), ("PYTHIA_QUEUE", "from-env")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(depth("from-env").await, (0, 1));
    assert_eq!(depth("from-flag").await, (1, 0));

    // A flag over both: two attempts this time.
    let o = pythia(
        &[
            "run",
            "--config",
            file.path(),
            "--queue",
            "from-flag",
            "--max-attempts",
            "2",
            "--metrics-addr",
            "off",
        ],
        &[("PYTHIA_QUEUE", "from-env")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("processed 2 (acked 0, retried 1, dead-lettered 1)"),
        "{}",
        text(&o)
    );
    assert_eq!(depth("from-flag").await, (0, 1));
}

#[test]
fn bad_config_files_and_urls_exit_2_naming_the_problem() {
    let cases = [
        ("queue = \"q\"\nconcurrency = \n", "pythia.toml"),
        (
            "queue = \"q\"\nconcurency = 8\n",
            "unknown key `concurency`",
        ),
        (
            "queue = \"q\"\nmax_attempts = \"lots\"\n",
            "key `max_attempts`",
        ),
        (
            "queue = \"q\"\nretry-delay = \"5 fortnights\"\n",
            "key `retry-delay`",
        ),
        (
            "queue = \"q\"\nburst = 1\n",
            "key `burst`: expected true or false",
        ),
        ("queue = [\"q\", 2.5, {a = 1}]\n", "key `queue`"),
    ];
    for (content, want) in cases {
        let file = TempFile::new("pythia.toml", content);
        let o = pythia(
            &["run", "--config", file.path(), "--metrics-addr", "off"],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{content}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{content}: {err}");
        assert!(err.contains(file.path()), "names the file: {err}");
    }
    let o = pythia(&["run", "--config", "/nonexistent/pythia.toml"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot read config file /nonexistent/pythia.toml"));

    // https:// needs the `tls` feature; with it, a CA file that cannot be read is a usage
    // error reported before Redis is tried (nothing listens on this Redis port).
    let o = pythia(
        &[
            "run",
            "--queue",
            "q",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--http",
            "https://example.com/hook?key=SECRET",
            "--http-ca-file",
            "/nonexistent/ca.pem",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let want = if cfg!(feature = "tls") {
        "--http-ca-file /nonexistent/ca.pem"
    } else {
        "--http https://example.com:443/hook: https:// needs the `pythia` binary built with the `tls` feature"
    };
    assert!(text(&o).contains(want), "{}", text(&o));
    assert!(!text(&o).contains("SECRET"), "{}", text(&o));
    let o = pythia(
        &[
            "run",
            "--queue",
            "q",
            "--http",
            "http://127.0.0.1:1/",
            "--exec",
            "true",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
struct Seen {
    body: String,
    headers: Vec<(String, String)>,
    at: Instant,
}

/// Answers by body: `ok` 200, `bad` 422, `flaky` 503 then 200, `busy` 429 with `Retry-After: 1`
/// then 200 (chunked), `hang` nothing for 3 s then 200. Connections are kept alive.
fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<Seen>>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let seen = seen.clone();
        std::thread::spawn(move || connection(stream, &seen));
    }
}

fn connection(stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        let earlier = {
            let mut s = seen.lock().unwrap();
            let n = s.iter().filter(|r| r.body == body).count();
            s.push(Seen {
                body: body.clone(),
                headers,
                at: Instant::now(),
            });
            n
        };
        if (body.as_str(), earlier) == ("hang", 0) {
            std::thread::sleep(Duration::from_secs(3));
        }
        let response = match (body.as_str(), earlier) {
            ("bad", _) => {
                "HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 15\r\n\r\nno such account"
                    .to_owned()
            }
            ("flaky", 0) => {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            ("busy", 0) => {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 4\r\n\r\nslow"
                    .to_owned()
            }
            ("busy", _) => {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                    .to_owned()
            }
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
        };
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn http_handler_acks_rejects_and_retries_by_status() {
    let server = RedisServer::start();
    let url = server.url();
    let conn = server.connect().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || serve(listener, s));

    let o = pythia(
        &[
            "produce",
            "--redis-url",
            &url,
            "--queue",
            "hooks",
            "--header",
            "tenant id=acme",
            "ok",
            "bad",
            "flaky",
            "busy",
            "ok",
            "hang",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let started = Instant::now();
    let o = pythia(
        &[
            "run",
            "--redis-url",
            &url,
            "--queue",
            "hooks",
            "--http",
            &format!("http://127.0.0.1:{port}/hook?v=1"),
            "--http-timeout",
            "500ms",
            "--retry-delay",
            "50ms",
            "--concurrency",
            "2",
            "--burst",
            "--metrics-addr",
            "off",
            "--log",
            "error",
        ],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("processed 9 (acked 5, retried 3, dead-lettered 1)"),
        "{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );

    let dead: Vec<String> = cmd(&conn, &["LRANGE", "pythia:{hooks}:dlq", "0", "-1"]).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].contains(r#""body":"bad""#)
            && dead[0].contains("422")
            && dead[0].contains("no such account"),
        "{dead:?}"
    );
    let left: i64 = cmd(&conn, &["LLEN", "hooks"]).await;
    assert_eq!(left, 0);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 9);
    assert_eq!(
        seen.iter().filter(|r| r.body == "hang").count(),
        2,
        "timed out, retried"
    );
    let header = |r: &Seen, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let busy: Vec<&Seen> = seen.iter().filter(|r| r.body == "busy").collect();
    assert_eq!(busy.len(), 2);
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    // A 429 with Retry-After throttles the whole queue and hands the message back: no attempt
    // counted (a 503 with one would be an ordinary retry, attempt 2).
    assert_eq!(header(busy[0], "x-pythia-attempt").as_deref(), Some("1"));
    assert_eq!(header(busy[1], "x-pythia-attempt").as_deref(), Some("1"));
    for r in &seen {
        assert_eq!(
            header(r, "content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(header(r, "x-pythia-queue").as_deref(), Some("hooks"));
        assert_eq!(
            header(r, "x-pythia-header-tenant-id").as_deref(),
            Some("acme")
        );
        assert!(header(r, "x-pythia-message-id").is_some_and(|id| !id.is_empty()));
    }
}

/// One worker file serves every command that talks to Redis: each takes the keys it has
/// (redis_url, queue, key_prefix) and ignores the worker-only ones (concurrency, exec, burst);
/// a required --queue may come from the file; a key no command knows is still an error.
#[tokio::test]
async fn one_config_file_serves_every_command() {
    let server = RedisServer::start();
    let conn = server.connect().await;
    let file = TempFile::new(
        "worker.toml",
        &format!(
            "redis_url = \"{}\"\nqueue = \"shared\"\nkey_prefix = \"acme\"\nconcurrency = 8\n\
             burst = true\nmetrics_addr = \"off\"\nexec = \"exit 65\"\n",
            server.url()
        ),
    );
    let env = [("PYTHIA_CONFIG", file.path())];
    let o = pythia(&["produce", "a", "b"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let n: i64 = cmd(&conn, &["LLEN", "shared"]).await;
    assert_eq!(n, 2, "produce took redis_url and queue from the file");

    let o = pythia(&["run", "--config", file.path()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    for args in [
        &["inspect", "--json"][..],
        &["dlq", "list", "--json"][..],
        &["doctor", "--json"][..],
    ] {
        let o = pythia(&[args, &["--config", file.path()]].concat(), &[]);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    let o = pythia(&["dlq", "list", "--json"], &env);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["total"], 2, "key_prefix from the file: {doc}");
    assert_eq!(doc["key"], "acme:{shared}:dlq", "{doc}");

    // A flag still wins over the file.
    let o = pythia(&["inspect", "--json", "-q", "other"], &env);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["queue"], "other", "{doc}");

    let bad = TempFile::new("bad.toml", "queue = \"q\"\nconcurency = 3\n");
    let o = pythia(&["inspect", "--config", bad.path()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("unknown key `concurency`"),
        "{}",
        text(&o)
    );
}
