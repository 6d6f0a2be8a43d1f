//! `opsctl serve`: health and metrics over HTTP for a load balancer, an uptime checker or
//! Prometheus. Scheduling stays with cron and Kubernetes CronJobs; this only answers.
//!
//! - `GET /healthz` runs the `check` runbook on the served instances — at most once per
//!   `--cache` (10s), and concurrent requests share one run (single flight) — and answers
//!   200 when every instance passed (warnings allowed), 503 otherwise, with the
//!   `opsctl.fleet/v1` JSON document as the body.
//! - `GET /healthz/<instance>`: that instance's run from the same results (404 if unknown).
//! - `GET /metrics`: the Prometheus text format — the same gauges as `--output prometheus`
//!   for those checks, plus the latest run of every other runbook on each instance read
//!   from the history (the results of cron-run routines).
//!
//! Only read-only runbooks run here: a `check` with a mutating step is refused at start.
//! These checks are not written to the history (one every few seconds would bury the
//! audit log). SIGTERM or Ctrl-C stops accepting, lets requests in flight finish, exits 0.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::args::{Global, ServeArgs};
use super::Ui;
use crate::diagnostic::Diagnostic;
use crate::engine::{Interrupts, NoTty, Options};
use crate::error::{Error, Exit};
use crate::instance::Instance;
use crate::inventory::Inventory;
use crate::procedures::{self, catalog};
use crate::report::{LogSink, RunReport, RunStatus, Sink, history, json, prometheus};
use crate::runbook::Runbook;
use crate::sysinfo;
use crate::vocab::Effect;

pub fn serve(g: &Global, _ui: &Ui, a: &ServeArgs) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let mut targets = a.targets.clone();
    if targets.instance.is_none() && targets.selector.is_empty() {
        targets.all = true;
    }
    let instances = super::resolve(&inventory, &targets, "serve")?;
    let runbook = Runbook::load(catalog::find("check", &inventory)?).map_err(Error::Invalid)?;
    if runbook.effect() > Effect::Read {
        let mutating: Vec<String> = runbook.steps().filter(|s| s.effect > Effect::Read).map(|s| format!("{} ({})", s.id, s.kind.name)).collect();
        return Err(Diagnostic::new(format!("`serve` runs only read-only runbooks, and `check` from {} changes things: {}", runbook.file.name, mutating.join(", ")))
            .help("keep mutating steps out of the check runbook; run them from cron or a CronJob")
            .into());
    }
    // Bind before anything else, so a port in use is a clear error at once.
    let listener = std::net::TcpListener::bind(&a.listen).map_err(|e| {
        Diagnostic::new(format!("cannot listen on {}: {}", a.listen, crate::error::io_reason(&e))).help("pick another address with --listen HOST:PORT")
    })?;
    listener.set_nonblocking(true).map_err(|e| Error::io("cannot set up the listener", &e))?;
    let cache = crate::duration::Duration::parse(&a.cache).map_err(|e| Diagnostic::new(format!("--cache `{}`: {e}", a.cache)))?.std();
    let local = listener.local_addr().map_err(|e| Error::io("cannot read the listening address", &e))?;
    let limits = procedures::fleet::Limits { max_errors: None, ..super::fleet_limits(g, instances.len()) };
    let state = Arc::new(State {
        runbook,
        instances,
        options: Options { dry_run: false, yes: false, parallel: g.parallel as usize },
        limits,
        cache,
        latest: std::sync::Mutex::new(None),
        flight: tokio::sync::Mutex::new(()),
        state_dir: sysinfo::state_dir(),
        history: inventory.history,
    });
    super::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Error::io("cannot set up the listener", &e))?;
        eprintln!(
            "opsctl serve: listening on http://{local} (check on {} instance{}, cached {}); /healthz, /healthz/<instance>, /metrics",
            state.instances.len(),
            if state.instances.len() == 1 { "" } else { "s" },
            crate::duration::short(cache)
        );
        let shutdown = CancellationToken::new();
        spawn_shutdown(shutdown.clone());
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.cancelled() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (state, shutdown) = (state.clone(), shutdown.clone());
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.answer(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
        drop(listener);
        eprintln!("opsctl serve: stopping; waiting for {} connection(s) in flight", connections.len());
        let _ = tokio::time::timeout(Duration::from_secs(30), async { while connections.join_next().await.is_some() {} }).await;
        Ok::<_, Error>(())
    })?;
    Ok(Exit::Passed)
}

/// The first SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.
fn spawn_shutdown(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        token.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(143);
    });
}

struct State {
    runbook: Runbook,
    instances: Vec<Arc<Instance>>,
    options: Options,
    limits: procedures::fleet::Limits,
    cache: Duration,
    /// The last results, and when they were made.
    latest: std::sync::Mutex<Option<(Instant, Arc<Vec<RunReport>>)>>,
    /// Held while the checks run: requests that come meanwhile wait for those results.
    flight: tokio::sync::Mutex<()>,
    state_dir: std::path::PathBuf,
    history: crate::inventory::HistorySettings,
}

impl State {
    fn fresh(&self) -> Option<Arc<Vec<RunReport>>> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.as_ref().filter(|(at, _)| at.elapsed() < self.cache).map(|(_, r)| r.clone())
    }

    /// The checks' results: cached, else run once for every request waiting.
    async fn reports(&self) -> Result<Arc<Vec<RunReport>>, String> {
        if let Some(r) = self.fresh() {
            return Ok(r);
        }
        let _flight = self.flight.lock().await;
        if let Some(r) = self.fresh() {
            return Ok(r);
        }
        let prepared = self.instances.iter().map(|i| procedures::prepare(&self.runbook, i.clone(), &[])).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let sink = || -> Box<dyn Sink> { Box::new(LogSink) };
        // serve's frequent checks are not written to the history.
        let mut ctx = procedures::Context::new(self.options.clone(), &NoTty, Interrupts::default(), &self.state_dir, &sink, self.history);
        ctx.record = false;
        let reports = procedures::Run { runbook: &self.runbook, ctx: &ctx }.on(prepared, self.limits).await.map_err(|e| e.to_string())?;
        let reports = Arc::new(reports);
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), reports.clone()));
        Ok(reports)
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into());
        }
        let path = req.uri().path().trim_end_matches('/').to_string();
        match path.as_str() {
            "/healthz" => match self.reports().await {
                Ok(reports) => {
                    let ok = reports.iter().all(|r| r.status == RunStatus::Passed);
                    let body = super::fleet_json("check", reports.iter().map(|r| (r.status, serde_json::from_str(&json::render(r)).unwrap_or_default())).collect());
                    reply(if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, "application/json", body)
                }
                Err(e) => error(&e),
            },
            "/metrics" => match self.reports().await {
                Ok(reports) => {
                    let mut all = self.recorded();
                    all.extend(reports.iter().cloned());
                    reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", prometheus::render(&all))
                }
                Err(e) => error(&e),
            },
            p if p.starts_with("/healthz/") => {
                let name = &p["/healthz/".len()..];
                if !self.instances.iter().any(|i| i.name == name) {
                    let served: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
                    let body = serde_json::json!({ "error": format!("instance `{name}` is not served here"), "served": served });
                    return reply(StatusCode::NOT_FOUND, "application/json", format!("{body}\n"));
                }
                match self.reports().await {
                    Ok(reports) => match reports.iter().find(|r| r.instance == name) {
                        Some(r) => reply(if r.status == RunStatus::Passed { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, "application/json", json::render(r)),
                        None => error(&format!("no result for {name}")),
                    },
                    Err(e) => error(&e),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz, /healthz/<instance> or /metrics\n".into()),
        }
    }

    /// The latest recorded run of each runbook on each served instance, from the last
    /// week of the history (read newest first, at most 100,000 records).
    fn recorded(&self) -> Vec<RunReport> {
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7);
        let names: std::collections::HashSet<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in history::newest_first(&self.state_dir).take(100_000).flatten() {
            if r.finished_at < since {
                break;
            }
            if names.contains(r.instance.as_str()) && !r.dry_run && seen.insert((r.runbook.clone(), r.instance.clone())) {
                out.push(r);
            }
        }
        out
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let body = crate::secret::scrub(&body).into_owned();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn error(why: &str) -> Response<Full<Bytes>> {
    reply(StatusCode::INTERNAL_SERVER_ERROR, "application/json", format!("{}\n", serde_json::json!({ "error": why })))
}
