//! The runs executing on this process, so that a cancel stops one at once instead of waiting for
//! its lease heartbeat to notice that its thread moved on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Every run in progress on this process, by thread (a thread normally has one; a run being
/// stopped may overlap the next turn's for a moment).
#[derive(Default)]
pub(super) struct Runs {
    next_id: AtomicU64,
    live: Mutex<HashMap<String, Vec<Live>>>,
}

/// One run in progress: what stops it.
struct Live {
    id: u64,
    /// The version of the checkpoint the run started from; a cancel written at a later version
    /// stops it, while a newer run (started after the cancel) is left alone.
    from_version: i64,
    stop: watch::Sender<bool>,
}

impl Runs {
    /// Registers a run of `thread_id` starting from the checkpoint at `from_version`; it stays
    /// registered for as long as the guard lives.
    pub(super) fn enter(&self, thread_id: &str, from_version: i64) -> RunGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop, stopped) = watch::channel(false);
        if let Ok(mut live) = self.live.lock() {
            live.entry(thread_id.to_owned()).or_default().push(Live {
                id,
                from_version,
                stop,
            });
        }
        RunGuard {
            runs: self,
            thread_id: thread_id.to_owned(),
            id,
            stopped,
        }
    }

    /// Stops every run of `thread_id` that started before the checkpoint at `version` (the
    /// cancel's); returns how many were told.
    pub(super) fn stop(&self, thread_id: &str, version: i64) -> usize {
        let Ok(live) = self.live.lock() else {
            return 0;
        };
        let mut told = 0;
        for run in live.get(thread_id).into_iter().flatten() {
            if run.from_version < version {
                run.stop.send_replace(true);
                told += 1;
            }
        }
        told
    }
}

/// A registered run; dropping it (the run returned or was dropped) unregisters it.
pub(super) struct RunGuard<'a> {
    runs: &'a Runs,
    thread_id: String,
    id: u64,
    stopped: watch::Receiver<bool>,
}

impl RunGuard<'_> {
    /// Whether the run was told to stop.
    pub(super) fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Returns once the run is told to stop; never otherwise.
    pub(super) async fn stopped(&mut self) {
        // The sender lives in the registry until this guard drops, so `changed` fails only if
        // the registry lock was poisoned; then no stop can come.
        if self.stopped.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let Ok(mut live) = self.runs.live.lock() else {
            return;
        };
        if let Some(runs) = live.get_mut(&self.thread_id) {
            runs.retain(|run| run.id != self.id);
            if runs.is_empty() {
                live.remove(&self.thread_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_reaches_runs_started_before_it_only() {
        let runs = Runs::default();
        let mut old = runs.enter("t", 3);
        assert_eq!(
            runs.stop("t", 3),
            0,
            "a cancel at the run's own version is older"
        );
        assert!(!old.is_stopped());
        assert_eq!(runs.stop("t", 4), 1);
        assert!(old.is_stopped());
        old.stopped().await;
        let newer = runs.enter("t", 5);
        assert_eq!(runs.stop("other", 9), 0);
        drop(old);
        assert!(!newer.is_stopped(), "the next turn's run is not stopped");
        drop(newer);
        assert_eq!(runs.stop("t", 9), 0, "gone once dropped");
    }
}
