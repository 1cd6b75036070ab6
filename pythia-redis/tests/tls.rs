//! `rediss://` against a real redis-server listening with TLS (feature `tls`): a self-signed
//! certificate made with openssl for the test. Verification is on by default (an untrusted
//! certificate is refused); trusting the test CA file works; a worker round trip runs over TLS.

#![cfg(feature = "tls")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pythia_core::{BrokerErrorKind, Message, WorkerRuntime, worker_fn};
use pythia_redis::{ListProducer, RedisConfig, RedisConnection, ReliableListBroker};

struct TlsRedis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is needed for the TLS test");
    assert!(st.success(), "openssl {args:?} failed");
}

fn start_tls_redis() -> TlsRedis {
    let dir = std::env::temp_dir().join(format!(
        "pythia-tls-{}-{:x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=pythia-test-ca",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis { child, port, dir }
}

#[tokio::test]
async fn rediss_verifies_by_default_and_carries_a_worker() {
    let server = start_tls_redis();

    // The CA is not trusted by the system: verification must refuse the connection.
    let strict = format!("rediss://127.0.0.1:{}", server.port);
    let err = RedisConnection::connect(
        RedisConfig::from_url(&strict)
            .unwrap()
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Connection, "{err}");

    let trusted = RedisConfig::from_url(&strict)
        .unwrap()
        .with_tls_ca_file(server.dir.join("ca.crt"));
    let conn = RedisConnection::connect(trusted).await.unwrap();
    ListProducer::new(&conn, "secure")
        .push_many(
            &(0..100)
                .map(|i| Message::new(format!("{i}")))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let summary = WorkerRuntime::new(
        ReliableListBroker::new(&conn, "secure"),
        worker_fn(|_m: Message| async { Ok(()) }),
    )
    .with_signal_handling(false)
    .with_burst(true)
    .run()
    .await
    .unwrap();
    assert_eq!(summary.acked, 100);
}
