//! `ocm mcp --http ADDR:PORT`: MCP's Streamable HTTP transport.

use super::tools::Context;
use crate::error::CliError;

/// Serves the tools over HTTP until the process is stopped.
pub fn serve(_ctx: Context, address: &str, _token_env: Option<&str>) -> Result<i32, CliError> {
    Err(CliError::Usage(crate::cli::UsageError {
        message: format!("--http {address}: not available yet"),
        command: Some(crate::cli::Name::Mcp),
    }))
}
