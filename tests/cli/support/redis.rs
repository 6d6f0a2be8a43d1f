//! Real Redis servers (Debian's `redis-server`) on free loopback ports: one shared by the
//! test binary, and fresh ones for tests that change a server (its memory, its master, its
//! users). Each is started through a watchdog that stops it and removes its directory when
//! this process ends. The tests set data up with `redis-cli`. `scripts/test.sh` installs
//! both; without them the tests skip — except under `CI=true`, where they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, in_ci, watched, which};

/// The ACL users every test server has besides `default` (which needs no password).
pub const USERS: &str = "user opsctl on >opsctl-test-secret ~* &* +@all\nuser limited on >limited-secret ~* &* -@all +ping +auth +hello\n";

pub struct Redis {
    pub port: u16,
    /// A TLS port, when the configuration asked for one (`{tls_port}`).
    pub tls_port: u16,
    pub dir: PathBuf,
}

static SHARED: OnceLock<Result<Redis, String>> = OnceLock::new();

/// The Redis shared by this test binary (do not change its configuration).
pub fn shared() -> Option<&'static Redis> {
    match SHARED.get_or_init(|| Redis::start("")) {
        Ok(r) => Some(r),
        Err(why) => {
            assert!(!in_ci(), "Redis is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// A fresh server with `config` added to the base configuration (`{tls_port}` in it becomes
/// a second free port); `None` (after saying why) outside CI when Redis is not installed.
pub fn fresh(config: &str) -> Option<Redis> {
    match Redis::start(config) {
        Ok(r) => Some(r),
        Err(why) => {
            assert!(!in_ci(), "Redis is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

impl Redis {
    fn start(config: &str) -> Result<Redis, String> {
        let program = which("redis-server").ok_or("redis-server is not installed (Debian: apt-get install redis-server; scripts/test.sh does)")?;
        which("redis-cli").ok_or("redis-cli is not installed (Debian: apt-get install redis-tools)")?;
        let dir = tempfile::Builder::new().prefix("opsctl-redis-").tempdir().map_err(|e| e.to_string())?.keep();
        let port = free_port();
        let tls_port = free_port();
        let config = config.replace("{tls_port}", &tls_port.to_string());
        let conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\ndir {}\nlogfile \"\"\n{USERS}{config}\n",
            dir.display()
        );
        std::fs::write(dir.join("redis.conf"), conf).map_err(|e| e.to_string())?;
        watched(&program.display().to_string(), &[dir.join("redis.conf").display().to_string()], &dir)?;
        let r = Redis { port, tls_port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("redis-cli").args(["-p", &port.to_string(), "PING"]).output().map_err(|e| e.to_string())?;
            let said = String::from_utf8_lossy(&out.stdout);
            if said.contains("PONG") || said.contains("NOAUTH") {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server did not start: {}", std::fs::read_to_string(r.dir.join("server.log")).unwrap_or_default()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:PORT/0`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` against this server (as the `opsctl` user) and returns what it printed.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--user", "opsctl", "--pass", "opsctl-test-secret", "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `INFO` read by `redis-cli`, field by field.
    pub fn info(&self, field: &str) -> Option<String> {
        self.cli(&["INFO", "everything"]).lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
    }
}
