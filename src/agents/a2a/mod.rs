//! A2A (agent-to-agent protocol) over JSON-RPC, both halves in one module so that what Baton
//! sends and what the agents it serves answer are written by the same types: `wire` holds the
//! shapes of v1.0 and v0.3, `client` calls agents (with the fallback to v0.3), `server` answers
//! as an agent over any [`server::Handler`] (the demo agents, the eval's scripted agents).
//!
//! It sits inside `agents` because `client` is one of the agents layer's transports and speaks its
//! `AgentRequest`, `AgentReply` and `AgentError`; `wire` and `server` need nothing of Baton's but
//! the card type, so anything (the demo agents, the eval's agents, Baton itself) can be served as
//! an agent on them without an import cycle.
//!
//! Baton implements the binding itself rather than through the official Rust SDK: see
//! ARCHITECTURE.md.

pub mod client;
pub mod server;
mod streaming;
pub mod wire;

pub use client::A2aClient;
pub use server::{Handler, Versions};
