//! The terminal commands beyond `serve`: a conversation (`chat`) and the agent directory
//! (`agents`).

pub mod agents;
pub mod chat;

pub use chat::{ChatArgs, ChatError, run};
