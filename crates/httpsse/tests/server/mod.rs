//! A small scripted HTTP server on 127.0.0.1 for the reader tests.
//!
//! Each accepted connection gets the next reply of the script (the last one
//! repeats). Every request head is reported on a channel, so tests wait for
//! "the server got request N" instead of sleeping.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers one connection.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 text/event-stream`, these bytes (chunked), the end of the body,
    /// then the connection closes.
    StreamThenClose(Vec<u8>),
    /// `200 text/event-stream`, these bytes, then the connection stays open
    /// and silent until the test or the server's drop closes it.
    StreamThenHold(Vec<u8>),
    /// This status with a plain-text body, then the connection closes.
    Status(u16, &'static str),
    /// `200` with this content type and body, then the connection closes.
    ContentType(&'static str, &'static str),
    /// Reads the request and never answers.
    NoAnswer,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0 for the first connection.
    pub index: usize,
    /// The request line and headers.
    pub head: String,
}

impl Request {
    /// A header's value (names compared without regard to case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

pub struct TestServer {
    addr: SocketAddr,
    requests: Receiver<Request>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stopping: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(script: Vec<Reply>) -> TestServer {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let (sender, requests) = mpsc::channel();
        let held = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let thread = {
            let held = Arc::clone(&held);
            let stopping = Arc::clone(&stopping);
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                for index in 0.. {
                    let Ok((mut stream, _)) = listener.accept() else {
                        return;
                    };
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    connections.fetch_add(1, Ordering::SeqCst);
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let head = read_head(&mut stream);
                    let _ = sender.send(Request { index, head });
                    let reply = &script[index.min(script.len() - 1)];
                    if answer(&mut stream, reply).is_ok() && keeps_open(reply) {
                        held.lock().unwrap().push(stream);
                    }
                }
            })
        };
        TestServer {
            addr,
            requests,
            held,
            stopping,
            connections,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/event", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections the server has accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits (at most 10 s) for the next request.
    pub fn next_request(&self) -> Request {
        self.requests
            .recv_timeout(Duration::from_secs(10))
            .expect("the server got no request within 10 s")
    }

    /// Waits (at most 10 s) until the client closes the held connection
    /// number `nth` (0 for the first one held); true if it did.
    pub fn held_connection_closes(&self, nth: usize) -> bool {
        let mut stream = self.held.lock().unwrap()[nth].try_clone().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept; the loop sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        for stream in self.held.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn keeps_open(reply: &Reply) -> bool {
    matches!(reply, Reply::StreamThenHold(_) | Reply::NoAnswer)
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn answer(stream: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    match reply {
        Reply::StreamThenClose(bytes) => {
            stream.write_all(STREAM_HEAD)?;
            if !bytes.is_empty() {
                stream.write_all(&chunk(bytes))?;
            }
            stream.write_all(b"0\r\n\r\n")?;
        }
        Reply::StreamThenHold(bytes) => {
            stream.write_all(STREAM_HEAD)?;
            if !bytes.is_empty() {
                stream.write_all(&chunk(bytes))?;
            }
        }
        Reply::Status(code, body) => {
            write!(
                stream,
                "HTTP/1.1 {code} Oops\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
        Reply::ContentType(kind, body) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
        Reply::NoAnswer => {}
    }
    stream.flush()
}
