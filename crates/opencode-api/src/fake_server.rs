//! A tiny scripted HTTP server on loopback for the unit tests: it records
//! each request and answers the way the test says (a fixed response, never,
//! or a scripted event stream per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the fake does with each request.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    /// Writes this whole HTTP response.
    With(&'static str),
    /// Reads the request and never answers.
    Never,
}

/// What one connection of a scripted event stream gets, after the response
/// head `200 text/event-stream`.
#[derive(Clone, Debug)]
pub(crate) enum Stream {
    /// These bytes, then the connection stays open until the server drops.
    Hold(&'static str),
    /// These bytes, then the connection is closed.
    Close(&'static str),
    /// This whole response instead of a stream (e.g. a 503).
    Respond(&'static str),
}

/// A loopback server that records each request (head and body) and answers
/// it. Dropping it stops and joins its thread.
pub(crate) struct FakeServer {
    pub(crate) port: u16,
    pub(crate) requests: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    release: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Answers every request the same way.
    pub(crate) fn start(answer: Answer) -> FakeServer {
        FakeServer::serve(move |_, stream| match answer {
            Answer::With(response) => {
                let _ = (&stream).write_all(response.as_bytes());
                None
            }
            Answer::Never => Some(stream),
        })
    }

    /// Serves an event stream: connection `n` gets `script[n]`; connections
    /// past the end of the script get the last entry again.
    pub(crate) fn event_stream(script: Vec<Stream>) -> FakeServer {
        FakeServer::serve(move |n, stream| {
            let step = script.get(n).or(script.last())?;
            let (head, body) = match step {
                Stream::Respond(response) => ("", *response),
                Stream::Hold(body) | Stream::Close(body) => (
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n",
                    *body,
                ),
            };
            let _ = (&stream).write_all(head.as_bytes());
            let _ = (&stream).write_all(body.as_bytes());
            matches!(step, Stream::Hold(_)).then_some(stream)
        })
    }

    /// Calls `answer` with each connection's number (from 0) after reading
    /// its request; a connection it returns is held open until the server
    /// drops, any other is closed.
    fn serve(
        answer: impl Fn(usize, TcpStream) -> Option<TcpStream> + Send + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, requests) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let mut count = 0;
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let _ = tx.send(request);
                held.extend(answer(count, stream));
                count += 1;
            }
            // Keep held connections open until the test is done.
            let _ = released.recv();
        });
        FakeServer {
            port,
            requests,
            stop,
            release,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn next_request(&self) -> String {
        self.requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the fake server got no request within 10 s")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.release.send(());
        // Wake the accept() so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(head + &String::from_utf8_lossy(&body))
}

/// A complete JSON response with this status line and body.
pub(crate) fn json_response(status: &str, body: &str) -> &'static str {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

/// The value of a header of a recorded request.
pub(crate) fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
