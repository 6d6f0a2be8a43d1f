//! Test support: drive the real `opsctl` binary, and serve HTTP(S) on loopback.

pub mod aws;
pub mod compose;
pub mod fake_kube;
pub mod kube;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The checkout under test. Read at run time: `cargo test` sets it for the test process,
/// while a compile-time `env!` would name whichever checkout last built the binary when
/// two checkouts share a target directory (as CI's clean clone does).
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_opsctl")
}

/// A scratch directory for one test: runbooks, inventories, the state dir.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// An `opsctl` invocation with this scratch's state dir and working directory.
    pub fn opsctl(&self) -> Opsctl {
        Opsctl::new().env("OPSCTL_STATE_DIR", self.state_dir().to_str().unwrap()).current_dir(self.path())
    }

    /// Runs recorded in the history, as JSON.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let p = self.state_dir().join("history.jsonl");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("history lines are JSON"))
            .collect()
    }
}

/// One run of the binary, built up and then executed.
#[must_use]
pub struct Opsctl {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl Opsctl {
    pub fn new() -> Opsctl {
        Opsctl { args: Vec::new(), env: Vec::new(), cwd: None }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Opsctl {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Opsctl {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    pub fn current_dir(mut self, d: impl AsRef<Path>) -> Opsctl {
        self.cwd = Some(d.as_ref().to_path_buf());
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.args(&self.args);
        c.env_remove("OPSCTL_CONFIG").env_remove("NO_COLOR").env_remove("XDG_STATE_HOME");
        // AWS: nothing from this machine's environment or files, and never the instance
        // metadata service; the AWS tests give credentials explicitly.
        for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"] {
            c.env_remove(k);
        }
        c.env("AWS_CONFIG_FILE", "/nonexistent/opsctl-test/config").env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/opsctl-test/credentials");
        c.env("AWS_EC2_METADATA_DISABLED", "true");
        // Kubernetes: only the kubeconfig a test names.
        c.env_remove("KUBECONFIG").env_remove("KUBERNETES_SERVICE_HOST");
        if std::env::var_os("OPSCTL_STATE_DIR").is_some() {
            c.env_remove("OPSCTL_STATE_DIR");
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs opsctl to the end. A run that has not ended after `$OPSCTL_TEST_RUN_TIMEOUT`
    /// seconds (default 300) is a hang: the test fails with what it printed so far, its
    /// process tree and every thread's stack (gdb, when installed), instead of stalling
    /// the whole suite until CI's own limit.
    pub fn run(self) -> Run {
        let limit = std::env::var("OPSCTL_TEST_RUN_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(300u64);
        let mut child = self.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("opsctl runs");
        // Each stream is read as it comes, so a hang can show what was printed so far.
        let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let writer = seen.clone();
            let done = std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                if let Some(mut r) = r {
                    while let Ok(n @ 1..) = r.read(&mut buf) {
                        writer.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
            });
            (seen, done)
        };
        let text = |seen: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        let out = pipe(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
        let err = pipe(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for opsctl") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let pid = child.id().to_string();
                let tree = Command::new("ps").args(["-e", "--forest", "-o", "pid,ppid,stat,etime,args"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
                let stacks = Command::new("gdb")
                    .args(["-p", &pid, "-batch", "-nx", "-ex", "thread apply all bt 30"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_else(|e| format!("(no stacks: gdb: {e})"));
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "opsctl {:?} (pid {pid}) did not end within {limit}s\n--- stdout\n{}\n--- stderr\n{}\n--- processes\n{tree}\n--- stacks\n{stacks}",
                    self.args,
                    text(&out.0),
                    text(&err.0)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: {
                out.1.join().expect("stdout reader");
                text(&out.0)
            },
            stderr: {
                err.1.join().expect("stderr reader");
                text(&err.0)
            },
            args: self.args,
        }
    }
}

/// What a run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    /// Asserts the exit code, showing everything the run printed when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "opsctl {:?} exited {} (expected {expected})\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Run {
        assert!(self.stdout.contains(text), "stdout lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Run {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// The `--output json` document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n--- stderr\n{}", self.stdout, self.stderr))
    }

    /// The report's step with this id.
    #[track_caller]
    pub fn step(&self, id: &str) -> serde_json::Value {
        let doc = self.json();
        doc["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no step {id} in\n{}", self.stdout))
    }
}

/// Whether we are in CI, where a missing backend fails instead of skipping.
#[allow(dead_code)]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A free loopback port (free when asked; the server that takes it binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `program args` in `dir` through a shell that stops it and removes `dir` when this
/// process ends.
pub fn watched(program: &str, args: &[String], dir: &Path) -> Result<(), String> {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', r"'\''"))).collect();
    let script = format!(
        "{program} {} >'{log}' 2>&1 & srv=$!; while kill -0 {pid} 2>/dev/null && kill -0 $srv 2>/dev/null; do sleep 0.5; done; kill $srv 2>/dev/null; wait $srv; rm -rf '{dir}'",
        quoted.join(" "),
        log = dir.join("server.log").display(),
        pid = std::process::id(),
        dir = dir.display()
    );
    let mut c = Command::new("sh");
    c.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    // Not waited for on purpose: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    let _watchdog = c.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
    Ok(())
}

/// A program on `$PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}
