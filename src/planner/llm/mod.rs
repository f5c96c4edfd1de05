//! The `llm` planner: the flow's four decisions made by an OpenAI-compatible model, each with a
//! JSON Schema for its output, checked before use.

pub mod client;
pub mod decisions;
