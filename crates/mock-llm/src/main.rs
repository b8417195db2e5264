//! `mock-llm`: run the offline OpenAI-compatible model server from a shell.
//!
//! Prints its base URL and the `OPENCODE_CONFIG_CONTENT` JSON that points
//! opencode at it, then serves until killed.

use std::process::ExitCode;

use mock_llm::{MockLlm, Reply, Script};

const USAGE: &str = "usage: mock-llm [--port N] [--reply TEXT]

Serves GET /v1/models and POST /v1/chat/completions on 127.0.0.1.
  --port N       listen on port N (default: an OS-assigned port)
  --reply TEXT   answer every prompt with TEXT (default: echo the prompt)

Prints two lines: `mock-llm listening on http://127.0.0.1:PORT/v1` and
`OPENCODE_CONFIG_CONTENT=<json>`, then serves until killed.";

fn main() -> ExitCode {
    let mut port = 0u16;
    let mut script = Script::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next().and_then(|v| v.parse().ok()) {
                Some(p) => port = p,
                None => return usage_error("--port needs a number from 0 to 65535"),
            },
            "--reply" => match args.next() {
                Some(text) => script = script.default_reply(Reply::text(text)),
                None => return usage_error("--reply needs a text"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument {other:?}")),
        }
    }
    let mock = match MockLlm::start_on(script, port) {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("mock-llm: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock-llm listening on {}", mock.base_url());
    println!("OPENCODE_CONFIG_CONTENT={}", mock.opencode_config());
    // Serve until killed; the server runs on its own threads.
    loop {
        std::thread::park();
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("mock-llm: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
