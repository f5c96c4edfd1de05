//! Baton: an interactive multi-agent orchestration server.
//!
//! A request is planned into tasks, agents are found for them in a directory and ranked, the work
//! runs in parallel batches, and the thread pauses, durably, whenever only the user can answer.
//! See `ARCHITECTURE.md` for the map of the code.

pub mod access;
pub mod agents;
pub mod api;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod card;
pub mod cli;
pub mod config;
pub mod directory;
pub mod engine;
pub mod eval;
pub mod metrics;
pub mod nodes;
pub mod planner;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod token_bucket;
pub mod webhooks;
