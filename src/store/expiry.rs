//! Which threads expire, and when: the operator's time-to-live policy (`--thread-ttl`,
//! `--waiting-thread-ttl`) and the batches the reaper asks a store to delete.
//!
//! Only threads nobody is running expire: finished ones (completed, error, cancelled) and ones
//! waiting for the user (pending_user_input), each class with its own time to live, counted from
//! the thread's last checkpoint. A `processing` thread is never selected, so a run's thread
//! (live lease or one about to be taken over) is never deleted under it.

use std::time::Duration;

use crate::state::ThreadStatus;

/// The statuses `--thread-ttl` applies to.
pub const FINISHED: [ThreadStatus; 3] = [
    ThreadStatus::Completed,
    ThreadStatus::Error,
    ThreadStatus::Cancelled,
];

/// How long threads are kept after their last checkpoint, per class; `None` keeps them forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Finished threads (completed, error, cancelled).
    pub finished: Option<Duration>,
    /// Threads waiting for the user's answer (pending_user_input).
    pub waiting: Option<Duration>,
}

impl ExpiryPolicy {
    /// Each status that expires, with its time to live.
    pub fn rules(&self) -> Vec<(ThreadStatus, Duration)> {
        let finished = self
            .finished
            .map(|ttl| FINISHED.map(|status| (status, ttl)))
            .into_iter()
            .flatten();
        let waiting = self
            .waiting
            .map(|ttl| (ThreadStatus::PendingUserInput, ttl));
        finished.chain(waiting).collect()
    }

    /// Whether anything expires at all (if not, no reaper runs).
    pub fn is_off(&self) -> bool {
        self.finished.is_none() && self.waiting.is_none()
    }
}

/// One batch of expired threads for a store to delete: at most `limit` threads with `status`
/// whose last checkpoint was written before `updated_before`, oldest first (a range of the index
/// `threads_status_recent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryBatch {
    pub status: ThreadStatus,
    /// Milliseconds since the Unix epoch.
    pub updated_before: i64,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_threads_are_kept_unless_their_own_setting_is_given() {
        let only_finished = ExpiryPolicy {
            finished: Some(Duration::from_secs(60)),
            waiting: None,
        };
        let statuses: Vec<_> = only_finished.rules().into_iter().map(|(s, _)| s).collect();
        assert_eq!(statuses, FINISHED.to_vec());
        let both = ExpiryPolicy {
            waiting: Some(Duration::from_secs(600)),
            ..only_finished
        };
        assert!(
            both.rules()
                .contains(&(ThreadStatus::PendingUserInput, Duration::from_secs(600)))
        );
        assert!(ExpiryPolicy::default().is_off());
        assert!(ExpiryPolicy::default().rules().is_empty());
    }
}
