//! One test binary for the whole API (faster to link than one per file).

mod a2a;
mod cancel;
mod chat;
mod cli;
mod cluster;
mod crash;
mod durability;
mod errors;
mod eval;
mod events;
mod face;
mod growth;
mod helpers;
mod llm_planner;
mod mcp;
mod metrics;
mod openapi;
mod planner;
mod pyagent;
mod reattach;
mod sdk;
mod store;
mod streaming;
mod threads;
mod webhooks;
mod ws;
