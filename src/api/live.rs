//! Process-wide counts of what clients hold open for a long time (WebSocket watches, event
//! streams), shown by `GET /api/health`: one that outlived its client would show there, and the
//! tests read them to prove that closing a client ends what it held.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

static WS_WATCHES: AtomicUsize = AtomicUsize::new(0);
static EVENT_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// What a client holds open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A WebSocket `watch` task, polling the store until its socket closes.
    WsWatch,
    /// A `GET /api/threads/{id}/events` stream, until its client goes.
    EventStream,
}

impl Held {
    fn counter(self) -> &'static AtomicUsize {
        match self {
            Held::WsWatch => &WS_WATCHES,
            Held::EventStream => &EVENT_STREAMS,
        }
    }
}

/// Counts one held thing for as long as it lives: created where the task or stream starts, and
/// dropped with it however it ends (finished, aborted, or its client gone).
#[derive(Debug)]
pub struct Holding(Held);

impl Holding {
    /// Counts `held` until this is dropped.
    pub fn new(held: Held) -> Self {
        held.counter().fetch_add(1, Ordering::Relaxed);
        Holding(held)
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.counter().fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counts as `GET /api/health` shows them (`"live"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LiveCounts {
    /// WebSocket watch tasks running in this process.
    pub ws_watches: usize,
    /// Event streams open in this process.
    pub event_streams: usize,
}

/// The counts right now.
pub fn counts() -> LiveCounts {
    LiveCounts {
        ws_watches: WS_WATCHES.load(Ordering::Relaxed),
        event_streams: EVENT_STREAMS.load(Ordering::Relaxed),
    }
}
