//! A **fake** Kubernetes API server, for the tests only (never part of the opsctl binary).
//!
//! No real kube-apiserver can run on the test machines, so this serves real HTTP with real
//! Kubernetes JSON, every object checked through its k8s-openapi type, for the resources
//! opsctl reads and writes: pods (log, eviction), nodes, services, events, secrets,
//! configmaps, namespaces, deployments / statefulsets / replicasets (scale), jobs,
//! cronjobs, ingresses, leases, poddisruptionbudgets and metrics.k8s.io. What it does like
//! the real one: resourceVersion on every write and 409 on a stale one, uid, generation and
//! observedGeneration, label and field selectors, paging (limit/continue), JSON merge and
//! strategic merge patch (by merge key for containers, env, ports, volumes), `dryRun=All`,
//! `Status` errors (401, 403, 404, 409, 422, 429), owner-reference garbage collection, and a
//! simulated controller ([`controller`]). What it does not: watches, server-side apply,
//! admission. RBAC ([`rbac`]) is enforced when Roles are given to it (`Cluster::rbac`),
//! else it refuses only a list of forbidden verbs. Exec ([`exec`]) and port-forwarding
//! ([`portforward`]) speak the real WebSocket channel protocols, but their "containers" are
//! this machine: the argv runs here, and a pod's port is a port on loopback.

pub mod controller;
mod exec;
pub mod patch;
mod portforward;
pub mod rbac;
pub mod selector;
mod server;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
pub use store::Cluster;

/// The token the fake's kubeconfig carries and the server expects.
pub const TOKEN: &str = "fake-token-for-tests";

pub struct FakeKube {
    pub addr: SocketAddr,
    pub cluster: Arc<Mutex<Cluster>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime"))
}

impl FakeKube {
    /// Starts a fake on a free loopback port (its own background runtime).
    pub fn start() -> FakeKube {
        let _guard = runtime().enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Self::serve(tokio::net::TcpListener::from_std(listener).expect("listener"))
    }

    /// Starts a fake serving HTTPS with `tls` on a free loopback port.
    pub fn start_tls(tls: tokio_rustls::TlsAcceptor) -> FakeKube {
        let _guard = runtime().enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        Self::serve_with(tokio::net::TcpListener::from_std(listener).expect("listener"), Some(tls))
    }

    /// Serves on `listener` in the current runtime.
    pub fn serve(listener: tokio::net::TcpListener) -> FakeKube {
        Self::serve_with(listener, None)
    }

    fn serve_with(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> FakeKube {
        let addr = listener.local_addr().expect("addr");
        let mut state = Cluster::default();
        state.token = Some(TOKEN.to_string());
        let cluster = Arc::new(Mutex::new(state));
        let c = cluster.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let c = c.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| server::handle(c.clone(), req));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).with_upgrades().await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
                        }
                    }
                });
            }
        });
        let c = cluster.clone();
        let controller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                controller::reconcile(&mut c.lock().unwrap());
            }
        });
        FakeKube { addr, cluster, tasks: vec![accept, controller] }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs `f` on the cluster state (seeding, inspecting).
    pub fn with<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        f(&mut self.cluster.lock().unwrap())
    }

    /// A kubeconfig with context `fake` (namespace `namespace`) pointing here.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: opsctl\n    namespace: {namespace}\nusers:\n- name: opsctl\n  user:\n    token: {TOKEN}\n",
            self.url()
        )
    }

    /// Waits (up to 10 s) until `f` holds.
    pub fn wait_until(&self, what: &str, f: impl Fn(&mut Cluster) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.with(&f) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
