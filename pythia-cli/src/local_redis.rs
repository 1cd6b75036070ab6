//! A throwaway `redis-server` for the quick start: found on PATH (installed from Debian packages
//! when missing and allowed), started on a free loopback port in a temporary directory, stopped
//! and removed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A redis-server this process started.
#[derive(Debug)]
pub(crate) struct LocalRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(bin).is_file()))
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure `redis-server` is runnable: installs the Debian package when it is missing and
/// this process may (root with apt-get), else says how.
pub(crate) async fn ensure_redis_server() -> Result<(), String> {
    if on_path("redis-server") {
        return Ok(());
    }
    if !(on_path("apt-get") && is_root()) {
        return Err(
            "redis-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`) \
             or pass --redis-url redis://host:port"
                .into(),
        );
    }
    crate::output::errln!(
        "redis-server not found: installing the Debian package (apt-get install -y redis-server)…"
    );
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "redis-server"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .await
            .map_err(|e| format!("apt-get failed to start: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`apt-get {}` failed ({status}); install redis-server yourself or pass --redis-url",
                args.join(" ")
            ));
        }
    }
    if on_path("redis-server") {
        Ok(())
    } else {
        Err("apt-get installed redis-server but it is not on PATH".into())
    }
}

impl LocalRedis {
    /// Starts a redis-server on a free loopback port, without persistence.
    pub(crate) async fn start() -> Result<Self, String> {
        ensure_redis_server().await?;
        let dir = std::env::temp_dir().join(format!("pythia-quickstart-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port: {e}"))?
                .port();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args([
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start redis-server: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("redis-server exited at start ({status})");
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Ok(Self { child, port, dir });
                }
                if Instant::now() > deadline {
                    last = "redis-server did not listen within 10 s".into();
                    let _ = child.kill().await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last)
    }

    /// The given URL, or a throwaway local server started now (returned too, to stop later).
    pub(crate) async fn unless_given(
        url: Option<&str>,
    ) -> Result<(String, Option<LocalRedis>), String> {
        match url {
            Some(u) => Ok((u.to_owned(), None)),
            None => {
                let local = Self::start().await?;
                Ok((local.url(), Some(local)))
            }
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server and removes its directory.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
