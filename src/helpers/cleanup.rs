//! Cleanup that must outlive a cancelled step. When a run is interrupted or a step times
//! out, the step's future is dropped, and `Drop` cannot wait for anything: a step that made
//! something to throw away (a half-restored database) hands the work here from its guard's
//! `Drop`. [`finish`] awaits it when the run ends, bounded, so the process does not exit
//! before it is done.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

static PENDING: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Starts `work` on the runtime, to be awaited by [`finish`]. Outside a runtime it is dropped.
pub fn spawn(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        PENDING.lock().unwrap_or_else(|e| e.into_inner()).push(rt.spawn(work));
    }
}

/// Waits for the cleanup started so far — and what that cleanup starts in turn (a stopped
/// step's task, whose drop hands over more) — at most `limit` in all; says so when it was
/// cut short.
pub async fn finish(limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return;
        }
        let n = pending.len();
        if tokio::time::timeout_at(deadline, futures_util::future::join_all(pending)).await.is_err() {
            tracing::warn!("{n} cleanup task(s) of a stopped step did not finish within {}s", limit.as_secs());
            return;
        }
    }
}
