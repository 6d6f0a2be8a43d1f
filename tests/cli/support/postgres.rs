//! Throwaway PostgreSQL clusters for the tests.
//!
//! `initdb` in a temporary directory and `pg_ctl start` on a free loopback port, as the
//! `postgres` user when the tests run as root (the server refuses root). TCP connections
//! need a password (scram-sha-256), so authentication errors can be tested. A watchdog
//! process stops the cluster and removes its directory when the test process exits.
//! `scripts/test.sh` installs Debian's `postgresql` when it is missing; without it the
//! PostgreSQL tests skip — except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::in_ci;

pub const PASSWORD: &str = "opsctl-test-pw";

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub major: u32,
    stopped: std::sync::atomic::AtomicBool,
    /// The server's options, to start it again after [`Cluster::kill`].
    opts: String,
}

/// The newest installed PostgreSQL's programs.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL program, as the postgres user when we are root.
fn as_postgres(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `pg_ctl start` for the cluster in `dir`, waiting until it accepts connections.
fn pg_ctl_start(bin: &Path, dir: &Path, opts: &str) -> Result<(), String> {
    let out = as_postgres(bin, "pg_ctl")
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-w", "-t", "30", "-o", opts, "start"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("pg_ctl start failed: {}{log}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster shared by the tests of this binary; `None` (after saying why) when
/// PostgreSQL is not installed and we are not in CI.
pub fn shared() -> Option<&'static Cluster> {
    match SHARED.get_or_init(|| Cluster::start(&[])) {
        Ok(c) => Some(c),
        Err(why) => {
            assert!(!in_ci(), "PostgreSQL is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

impl Cluster {
    /// A new cluster with extra `-c name=value` settings.
    pub fn start(settings: &[&str]) -> Result<Cluster, String> {
        Cluster::start_with(settings, |_| Vec::new())
    }

    /// A cluster serving TLS with a certificate for 127.0.0.1 signed by a fresh test CA;
    /// returns it and the CA's PEM file.
    pub fn start_tls() -> Result<(Cluster, PathBuf), String> {
        let (ca, (cert, key), _) = super::server::certificates();
        let mut ca_file = PathBuf::new();
        let cluster = Cluster::start_with(&[], |dir| {
            std::fs::write(dir.join("server.crt"), &cert).unwrap();
            std::fs::write(dir.join("server.key"), &key).unwrap();
            std::fs::write(dir.join("ca.crt"), &ca).unwrap();
            ca_file = dir.join("ca.crt");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                Command::new("chown").args(["postgres:postgres"]).arg(dir.join("server.crt")).arg(dir.join("server.key")).status().unwrap();
            }
            vec![
                "ssl=on".to_string(),
                format!("ssl_cert_file={}", dir.join("server.crt").display()),
                format!("ssl_key_file={}", dir.join("server.key").display()),
            ]
        })?;
        Ok((cluster, ca_file))
    }

    /// A new cluster; `prepare` may write files into its directory before the server starts
    /// and returns more `-c` settings.
    fn start_with(settings: &[&str], prepare: impl FnOnce(&Path) -> Vec<String>) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); scripts/test.sh installs it")?;
        let major: u32 = bin.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).unwrap_or(0);
        let dir = tempfile::Builder::new().prefix("opsctl-pg-").tempdir().map_err(|e| e.to_string())?.keep();
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().map_err(|e| e.to_string())?;
            assert!(status.success());
        }
        std::fs::write(dir.join("pw"), PASSWORD).unwrap();
        if is_root() {
            Command::new("chown").args(["postgres:postgres"]).arg(dir.join("pw")).status().unwrap();
        }
        let out = as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("pw").display()))
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = free_port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_preload_libraries=pg_stat_statements -c max_connections=80 -c wal_level=replica -c max_wal_senders=4",
            dir.display()
        );
        for s in settings.iter().map(|s| s.to_string()).chain(prepare(&dir)) {
            opts.push_str(&format!(" -c {s}"));
        }
        pg_ctl_start(&bin, &dir, &opts)?;
        let cluster = Cluster { port, dir, bin, major, stopped: false.into(), opts };
        cluster.watchdog();
        Ok(cluster)
    }

    /// Stops the cluster and removes it when this test process ends, however it ends.
    fn watchdog(&self) {
        let runuser = if is_root() { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser}{pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.dir.join("data").display(),
            dir = self.dir.display()
        );
        let mut c = Command::new("sh");
        c.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        // Not waited for on purpose: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = c.spawn().expect("watchdog starts");
    }

    /// A superuser URL for `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql and returns its unaligned, tuples-only output.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_command(db).args(["-c", sql]).output().expect("psql runs");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A psql command for `db` (add `-c SQL`, or pipe a script to it).
    pub fn psql_command(&self, db: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .env("PGPASSWORD", PASSWORD)
            // A statement stuck behind a lock fails the test with the reason instead of
            // stalling the suite.
            .env("PGOPTIONS", "-c lock_timeout=60s -c statement_timeout=180s")
            .env_remove("PGDATABASE");
        c
    }

    /// A fresh database for one test.
    pub fn create_db(&self, name: &str) -> String {
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name.to_string()
    }

    /// A session kept open running `sql` (or idle after it, holding its transaction);
    /// killed when the guard drops.
    pub fn background(&self, db: &str, user: &str, sql: &str) -> Background {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("psql starts");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
        Background { child, _stdin: stdin }
    }

    /// A streaming replica of this cluster (pg_basebackup -R), started on its own port.
    pub fn start_replica(&self) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new().prefix("opsctl-pg-replica-").tempdir().map_err(|e| e.to_string())?.keep();
        if is_root() {
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().map_err(|e| e.to_string())?;
        }
        let out = as_postgres(&self.bin, "pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-R", "-X", "stream", "-D"])
            .arg(dir.join("data"))
            .env("PGPASSWORD", PASSWORD)
            .output()
            .map_err(|e| format!("pg_basebackup: {e}"))?;
        if !out.status.success() {
            return Err(format!("pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c hot_standby=on -c fsync=off", dir.display());
        pg_ctl_start(&self.bin, &dir, &opts)?;
        let replica = Cluster { port, dir, bin: self.bin.clone(), major: self.major, stopped: false.into(), opts };
        replica.watchdog();
        Ok(replica)
    }

    /// Starts the server again after [`Cluster::kill`] (crash recovery runs).
    pub fn restart(&self) -> Result<(), String> {
        pg_ctl_start(&self.bin, &self.dir, &self.opts)?;
        self.stopped.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Stops the server at once, like a crash.
    pub fn kill(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = as_postgres(&self.bin, "pg_ctl").arg("-D").arg(self.dir.join("data")).args(["stop", "-m", "immediate"]).output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = as_postgres(&self.bin, "pg_ctl").arg("-D").arg(self.dir.join("data")).args(["stop", "-m", "immediate"]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until a backup into the local store at `store` is writing its dump (a `.partial-*`
/// directory with a non-empty `postgres.dump.tmp`).
pub fn wait_until_dumping(store: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = std::fs::read_dir(store).ok().into_iter().flatten().flatten().find(|e| e.file_name().to_string_lossy().starts_with(".partial-"));
        if partial.is_some_and(|dir| std::fs::metadata(dir.path().join("postgres.dump.tmp")).is_ok_and(|m| m.len() > 0)) {
            return;
        }
        assert!(Instant::now() < deadline, "the backup never started writing");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A psql session in the background.
pub struct Background {
    child: Child,
    _stdin: std::process::ChildStdin,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true (statistics reach pg_stat views with a delay).
#[track_caller]
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
