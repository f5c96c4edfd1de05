//! The terminal commands beyond `serve`: a conversation (`chat`), the agent directory (`agents`), API keys (`keys`),
//! the throughput benchmark (`bench`) and compacting a SQLite database (`vacuum`).

pub mod agents;
pub mod bench;
pub mod bench_directory;
pub mod bench_turns;
pub mod chat;
pub mod keys;
pub mod vacuum;

pub use chat::{ChatArgs, ChatError, run};
