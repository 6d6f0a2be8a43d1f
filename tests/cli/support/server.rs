//! A local HTTP and HTTPS server for the tests, started once per test binary.
//!
//! Routes:
//! - `/health` → 200 `{"status":"healthy","checks":{"database":{"status":"healthy"}}}`
//! - `/degraded` → 200 with `status: degraded` and `checks.database.status: down`
//! - `/status/CODE` → that status
//! - `/slow/MS` → 200 after MS milliseconds
//! - `/text` → 200 `All systems OK`; `/notjson` → 200 HTML
//! - `/flaky/KEY/N` → 503 for the first N requests with KEY, then 200
//! - `/concurrent/KEY/MS` → 200 after MS ms; `/stats/KEY` → `{"max": in-flight peak, "count": n}`
//! - `/echo` → the request's method, headers and body as JSON
//! - `/hook/KEY` → records the request (POST); `/hooks/KEY` → `{"bodies": [...], "headers": [...]}`

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A recorded webhook call: body and headers.
type Hook = (String, HashMap<String, String>);

#[derive(Default)]
struct State {
    counters: HashMap<String, u64>,
    in_flight: HashMap<String, (u64, u64, u64)>, // current, max, count
    hooks: HashMap<String, Vec<Hook>>,
}

/// Addresses of the servers.
pub struct Servers {
    pub http: SocketAddr,
    /// HTTPS with a certificate signed by `ca_pem`, valid for a year.
    pub https: SocketAddr,
    /// HTTPS with a certificate that expires in 5 days.
    pub https_expiring: SocketAddr,
    /// The CA that signed both certificates, as a PEM file path.
    pub ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Servers {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }
    pub fn expiring_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_expiring.port())
    }
}

static SERVERS: OnceLock<Servers> = OnceLock::new();

/// The servers, started on first use.
pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(start)
}

/// A port where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn start() -> Servers {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, year, soon) = certificates();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let state = Arc::new(Mutex::new(State::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let expiring = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((http.local_addr().unwrap(), https.local_addr().unwrap(), expiring.local_addr().unwrap())).unwrap();
            tokio::spawn(serve(http, None, state.clone()));
            tokio::spawn(serve(https, Some(tls_config(year)), state.clone()));
            serve(expiring, Some(tls_config(soon)), state).await;
        });
    });
    let (http, https, https_expiring) = rx.recv().unwrap();
    Servers { http, https, https_expiring, ca_file, _dir: dir }
}

pub type CertAndKey = (String, String);

/// A CA, a leaf for localhost and 127.0.0.1 valid a year, and one expiring in 5 days (PEM).
pub fn certificates() -> (String, CertAndKey, CertAndKey) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "opsctl test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |days: i64| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let start = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC) - jiff::Span::new().days(1);
        let end = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC) + jiff::Span::new().days(days);
        p.not_before = date_time_ymd(start.year() as i32, start.month() as u8, start.day() as u8);
        p.not_after = date_time_ymd(end.year() as i32, end.month() as u8, end.day() as u8);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    (ca_cert.pem(), leaf(365), leaf(5))
}

pub fn tls_config((cert, key): CertAndKey) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes()).map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), service).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", content_type).body(Full::new(body.into())).unwrap()
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().to_string();
    let headers: HashMap<String, String> =
        req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let json = "application/json";
    Ok(match parts.as_slice() {
        ["health"] => reply(200, json, r#"{"status":"healthy","checks":{"database":{"status":"healthy"}},"version":"2"}"#),
        ["degraded"] => reply(200, json, r#"{"status":"degraded","checks":{"database":{"status":"down"}}}"#),
        ["status", code] => reply(code.parse().unwrap_or(500), "text/plain", format!("status {code}")),
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            reply(200, "text/plain", "ok")
        }
        ["text"] => reply(200, "text/plain", "All systems OK"),
        ["notjson"] => reply(200, "text/html", "<html>oops</html>"),
        ["flaky", key, n] => {
            let count = {
                let mut s = state.lock().unwrap();
                let c = s.counters.entry(key.to_string()).or_default();
                *c += 1;
                *c
            };
            if count <= n.parse().unwrap_or(0) { reply(503, "text/plain", "try later") } else { reply(200, json, r#"{"status":"healthy"}"#) }
        }
        ["concurrent", key, ms] => {
            {
                let mut s = state.lock().unwrap();
                let e = s.in_flight.entry(key.to_string()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
                e.2 += 1;
            }
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            state.lock().unwrap().in_flight.get_mut(*key).unwrap().0 -= 1;
            reply(200, "text/plain", "ok")
        }
        ["stats", key] => {
            let (_, max, count) = state.lock().unwrap().in_flight.get(*key).copied().unwrap_or_default();
            reply(200, json, format!(r#"{{"max":{max},"count":{count}}}"#))
        }
        ["echo"] => reply(200, json, serde_json::json!({ "method": method, "headers": headers, "body": body }).to_string()),
        ["hook", key] => {
            state.lock().unwrap().hooks.entry(key.to_string()).or_default().push((body, headers));
            reply(200, "text/plain", "ok")
        }
        ["hooks", key] => {
            let s = state.lock().unwrap();
            let hooks = s.hooks.get(*key).cloned().unwrap_or_default();
            let bodies: Vec<&String> = hooks.iter().map(|(b, _)| b).collect();
            let headers: Vec<&HashMap<String, String>> = hooks.iter().map(|(_, h)| h).collect();
            reply(200, json, serde_json::json!({ "bodies": bodies, "headers": headers }).to_string())
        }
        _ => reply(404, "text/plain", "not found"),
    })
}

/// GETs a server URL from the test (to read `/stats` and `/hooks`).
pub fn get_json(url: &str) -> serde_json::Value {
    let addr = url.trim_start_matches("http://");
    let (host, path) = addr.split_once('/').unwrap();
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}
