//! The terminal commands beyond `serve`: a conversation (`chat`), the agent directory (`agents`)
//! and the throughput benchmark (`bench`).

pub mod agents;
pub mod bench;
pub mod bench_directory;
pub mod chat;

pub use chat::{ChatArgs, ChatError, run};
