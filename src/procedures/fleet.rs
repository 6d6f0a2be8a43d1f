//! Running one procedure on many instances: at most `max_concurrency` at once, in the
//! order given; once more than `max_errors` have failed no new instance is launched (the
//! runs in flight finish, the rest are reported as not started); an interrupt stops
//! launching. Results come back in the order the instances were given.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many instances run at once, and when to stop launching.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_concurrency: usize,
    /// Stop launching once more than this many have failed (`--max-errors`).
    pub max_errors: Option<usize>,
}

impl Limits {
    pub const ONE: Limits = Limits { max_concurrency: 1, max_errors: None };
}

/// Runs `run` on each item under `limits`. `failed` says whether a result counts against
/// `max_errors`; `not_started` is the result of an item that was not launched.
pub async fn fan_out<I, O, Fut>(
    items: Vec<I>,
    limits: Limits,
    run: impl Fn(I) -> Fut,
    failed: impl Fn(&O) -> bool,
    not_started: impl Fn(I, usize) -> O,
) -> Vec<O>
where
    Fut: Future<Output = O>,
{
    use futures_util::stream::{self, StreamExt};
    let failures = AtomicUsize::new(0);
    let (failures, run, failed, not_started) = (&failures, &run, &failed, &not_started);
    let mut results: Vec<(usize, O)> = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| async move {
            // The rule: once more than `max_errors` instances have failed, no new one is
            // launched; those in flight finish.
            if let Some(n) = limits.max_errors
                && failures.load(Ordering::SeqCst) > n
            {
                return (i, not_started(item, n));
            }
            let out = run(item).await;
            if failed(&out) {
                failures.fetch_add(1, Ordering::SeqCst);
            }
            (i, out)
        })
        .buffer_unordered(limits.max_concurrency.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stops_launching_once_more_than_max_errors_failed() {
        // One at a time: items 0 and 1 fail; with max_errors 1 the third is not launched.
        let limits = Limits { max_concurrency: 1, max_errors: Some(1) };
        let out = fan_out(vec![0, 1, 2, 3], limits, |i| async move { if i < 2 { "failed" } else { "passed" } }, |o| *o == "failed", |_, _| "not started").await;
        assert_eq!(out, ["failed", "failed", "not started", "not started"]);
        let limits = Limits { max_concurrency: 1, max_errors: Some(0) };
        let out = fan_out(vec![0, 1, 2], limits, |_| async { "failed" }, |o| *o == "failed", |_, _| "not started").await;
        assert_eq!(out, ["failed", "not started", "not started"]);
        let out = fan_out(vec![0, 1, 2], Limits { max_concurrency: 3, max_errors: None }, |i| async move { i * 2 }, |_| true, |_, _| 0).await;
        assert_eq!(out, [0, 2, 4]);
    }
}
