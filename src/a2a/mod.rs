//! A2A (agent-to-agent protocol) over JSON-RPC, both halves in one module so that what Baton
//! sends and what the agents it serves answer are written by the same types: `wire` holds the
//! shapes of v1.0 and v0.3, `client` calls agents (with the fallback to v0.3), `server` answers
//! as an agent over any [`server::Handler`] (the demo agents, the eval's scripted agents).
//!
//! `wire` and `server` need nothing of Baton's but the card type, so anything can be served as
//! an agent; `client` is the agents layer's A2A transport and speaks its `AgentReply` and
//! `AgentError`.
//!
//! Baton implements the binding itself rather than through the official Rust SDK: see
//! ARCHITECTURE.md.

pub mod client;
pub mod server;
pub mod wire;

pub use client::A2aClient;
pub use server::{Handler, Versions};
