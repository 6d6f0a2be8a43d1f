//! The floor of scripts/bench-fleet.sh: one process that sends N GET requests at once to
//! one URL with the HTTP client opsctl uses (reqwest on tokio, one connection per request in
//! flight) and checks each answer is 200 with a body — what checking N HTTP endpoints at
//! once costs on this machine before any runbook, inventory, report or history.
//!
//!     cargo run --release --example fleet-floor -- URL N

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "http://127.0.0.1:18080/health".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let ok = rt.block_on(async {
        let client = reqwest::Client::new();
        let checks = (0..n).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(&url).send().await.ok()?;
                let status = response.status();
                let body = response.bytes().await.ok()?;
                Some(status.is_success() && !body.is_empty())
            })
        });
        let results = futures_util::future::join_all(checks).await;
        results.into_iter().filter(|r| matches!(r, Ok(Some(true)))).count()
    });
    if ok != n {
        eprintln!("fleet-floor: {ok} of {n} checks answered 200");
        std::process::exit(1);
    }
}
