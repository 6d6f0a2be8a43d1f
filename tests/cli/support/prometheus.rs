//! A real Prometheus (Debian's `prometheus`), once per test binary, scraping a target this
//! process serves, with rules that work, an alert the tests can fire, and a rule that fails
//! to evaluate; and a real Alertmanager (`prometheus-alertmanager`) the tests post alerts to.
//!
//! Both run on free loopback ports from a temp dir, started through a watchdog shell that
//! stops them and removes the dir when this process ends, however it ends. `scripts/test.sh`
//! installs them; without them the tests skip — except under `CI=true`, where they fail.
//!
//! The target (`job="app"`) serves whatever gauges the tests set ([`Prometheus::set`]), so
//! each test works on metrics of its own; `job="gone"` points at a closed port and is down.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, in_ci, watched, which};

/// The rules Prometheus loads: a group that evaluates, and one whose rule cannot (`up` has a
/// series per job, so matching `on()` nothing is many-to-many).
const RULES: &str = r#"groups:
  - name: app
    rules:
      - alert: OpsctlTestTriggered
        expr: opsctl_test_trigger > 0
        labels: { severity: critical }
        annotations: { summary: "the test trigger is set" }
      - record: job:opsctl_test_value:max
        expr: max by (job) (opsctl_test_value)
  - name: broken
    rules:
      - record: opsctl_test_broken
        expr: up * on() up
"#;

pub struct Prometheus {
    pub port: u16,
    metrics: Arc<Mutex<BTreeMap<String, f64>>>,
}

static SHARED: OnceLock<Result<Prometheus, String>> = OnceLock::new();

/// The Prometheus shared by this test binary; `None` (after saying why) outside CI when it
/// is not installed.
pub fn shared() -> Option<&'static Prometheus> {
    match SHARED.get_or_init(Prometheus::start) {
        Ok(p) => Some(p),
        Err(why) => {
            assert!(!in_ci(), "Prometheus is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Polls `GET path` on a loopback port until it answers 200, or gives up saying why.
fn wait_ready(port: u16, path: &str, what: &str, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(port, path).is_some_and(|(status, _)| status == 200) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} did not become ready: {}", std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()))
}

/// One HTTP/1.0 request to a loopback port: (status, body).
pub fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, rest) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, rest.to_string()))
}

pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path, None)
}

/// `%`-encodes a query parameter.
pub fn encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

impl Prometheus {
    fn start() -> Result<Prometheus, String> {
        let program = which("prometheus").ok_or("prometheus is not installed (Debian: apt-get install prometheus; scripts/test.sh does)")?;
        let metrics: Arc<Mutex<BTreeMap<String, f64>>> = Arc::new(Mutex::new(BTreeMap::from([("opsctl_test_trigger".to_string(), 0.0)])));
        let target = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let target_port = target.local_addr().unwrap().port();
        let served = metrics.clone();
        std::thread::spawn(move || {
            for conn in target.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let text: String = served.lock().unwrap().iter().map(|(k, v)| format!("{k} {v}\n")).collect();
                let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{text}", text.len());
            }
        });
        let dir = tempfile::Builder::new().prefix("opsctl-prometheus-").tempdir().map_err(|e| e.to_string())?.keep();
        let port = free_port();
        let closed = free_port();
        std::fs::write(dir.join("rules.yml"), RULES).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [{rules}]\nscrape_configs:\n  - job_name: app\n    static_configs: [{{ targets: ['127.0.0.1:{target_port}'] }}]\n  - job_name: gone\n    static_configs: [{{ targets: ['127.0.0.1:{closed}'] }}]\n",
                rules = dir.join("rules.yml").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let args = vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_string(),
        ];
        watched(&program.display().to_string(), &args, &dir)?;
        wait_ready(port, "/-/ready", "Prometheus", &dir)?;
        let p = Prometheus { port, metrics };
        // The first scrapes and rule evaluations, so every test starts with data.
        p.wait_for("up{job=\"app\"} == 1", |r| !r.is_empty());
        p.wait_for("up{job=\"gone\"} == 0", |r| !r.is_empty());
        Ok(p)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets a gauge the target serves: `set("opsctl_test_value{case=\"a\"}", 0.5)`.
    pub fn set(&self, series: &str, value: f64) {
        self.metrics.lock().unwrap().insert(series.to_string(), value);
    }

    /// An instant query's result (`data.result`), asked of Prometheus directly.
    pub fn query(&self, q: &str) -> Vec<Value> {
        let (status, body) = get(self.port, &format!("/api/v1/query?query={}", encode(q))).expect("Prometheus answers");
        assert_eq!(status, 200, "{q}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (up to 20 s) until the rule groups (`/api/v1/rules`) satisfy `done`.
    #[track_caller]
    pub fn wait_for_rules(&self, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = get(self.port, "/api/v1/rules").expect("Prometheus answers");
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
            if done(&groups) {
                return;
            }
            assert!(Instant::now() < deadline, "the rules never got there: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (up to 20 s) until the query's result satisfies `done`: scrapes and rule
    /// evaluations happen every second.
    #[track_caller]
    pub fn wait_for(&self, q: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.query(q);
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "Prometheus never answered `{q}` as expected; last: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A real Alertmanager, shared by this test binary; alerts are posted to it by the tests.
pub struct Alertmanager {
    pub port: u16,
}

static ALERTMANAGER: OnceLock<Result<Alertmanager, String>> = OnceLock::new();

/// The Alertmanager shared by this test binary; `None` (after saying why) outside CI when
/// it is not installed.
pub fn alertmanager() -> Option<&'static Alertmanager> {
    match ALERTMANAGER.get_or_init(Alertmanager::start) {
        Ok(a) => Some(a),
        Err(why) => {
            assert!(!in_ci(), "Alertmanager is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

impl Alertmanager {
    fn start() -> Result<Alertmanager, String> {
        let program = which("prometheus-alertmanager")
            .or_else(|| which("alertmanager"))
            .ok_or("Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager; scripts/test.sh does)")?;
        let dir = tempfile::Builder::new().prefix("opsctl-alertmanager-").tempdir().map_err(|e| e.to_string())?.keep();
        let port = free_port();
        std::fs::write(
            dir.join("alertmanager.yml"),
            "route: { receiver: nobody, group_wait: 1s, group_interval: 1s, repeat_interval: 1h }\nreceivers: [{ name: nobody }]\n",
        )
        .map_err(|e| e.to_string())?;
        let args = vec![
            format!("--config.file={}", dir.join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
            "--log.level=warn".to_string(),
        ];
        watched(&program.display().to_string(), &args, &dir)?;
        wait_ready(port, "/-/ready", "Alertmanager", &dir)?;
        Ok(Alertmanager { port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Posts an alert, active for an hour: `labels` and a `summary`.
    #[track_caller]
    pub fn fire(&self, labels: Value, summary: &str) {
        let now = jiff::Timestamp::now();
        let body = serde_json::json!([{ "labels": labels, "annotations": { "summary": summary }, "startsAt": now.to_string(), "endsAt": (now + jiff::SignedDuration::from_hours(1)).to_string() }]);
        let (status, answer) = request(self.port, "POST", "/api/v2/alerts", Some(&body.to_string())).expect("Alertmanager answers");
        assert_eq!(status, 200, "posting an alert: {answer}");
    }

    /// Every silence Alertmanager knows.
    pub fn silences(&self) -> Vec<Value> {
        let (_, body) = get(self.port, "/api/v2/silences").expect("Alertmanager answers");
        serde_json::from_str::<Value>(&body).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    }
}
