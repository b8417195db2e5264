//! Sandboxes: named projects made from a git URL.

#![forbid(unsafe_code)]

pub mod dotenv;
pub mod env;
mod error;
pub mod keys;
pub mod git;
mod name;
pub mod url;

pub use env::{EnvMode, Secret, Warning};
pub use error::Error;
pub use name::{MAX_NAME_LEN, NAME_RULE, SandboxName};
pub use url::{GitUrl, Transport};
