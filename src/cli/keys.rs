//! `baton keys add NAME [--admin] --api-keys-file PATH`: makes an API key, prints it once, and
//! appends only its hash to the keys file (a running server takes it on SIGHUP).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::access::{Owner, Role};
use crate::auth::{KeysFileError, NewKey, add_key};

/// Flags of `baton keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// What to do with the keys file.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a key for NAME, print it once, and append its hash to the keys file.
    Add {
        /// Whose key: the owner of the threads it creates (letters, digits, `_-.@`).
        name: String,
        /// An admin key: sees every thread and changes the agent directory.
        #[arg(long)]
        admin: bool,
        /// The keys file (created, mode 0600, if missing).
        #[arg(long, env = "BATON_API_KEYS_FILE")]
        api_keys_file: PathBuf,
    },
}

/// Runs a `baton keys` command; returns the new key (the caller prints it).
pub fn run(args: &KeysArgs) -> Result<NewKey, KeysFileError> {
    match &args.command {
        KeysCommand::Add {
            name,
            admin,
            api_keys_file,
        } => {
            let owner = Owner::parse(name)?;
            let role = if *admin { Role::Admin } else { Role::User };
            add_key(api_keys_file, &owner, role)
        }
    }
}
