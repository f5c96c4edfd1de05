//! One test binary for the whole API (faster to link than one per file).

mod chat;
mod cli;
mod durability;
mod errors;
mod helpers;
mod store;
mod ws;
