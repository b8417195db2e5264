//! A tiny stand-in of the OpenCode HTTP API for unit tests of the turn
//! loop (watchdog, permission pause, one turn per session): the routes a
//! turn uses, with messages and event frames the test sets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    /// `GET /session/ses_1/message`: the JSON array.
    messages: Mutex<String>,
    /// Frames for the open event stream.
    frames: Mutex<Option<Receiver<String>>>,
    stop: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    /// The event stream answers but never says `server.connected` (a
    /// server the stream has not reached yet).
    silent: bool,
    /// Every request line (`GET /path`), in order.
    requests: Mutex<Vec<String>>,
    /// An event sent on the stream (once) while the next full message
    /// list is served, before it is answered.
    on_list: Mutex<Option<String>>,
    /// The stream's frames, for the routes that send one.
    sender: Mutex<Option<Sender<String>>>,
    /// A stored prompt is not told on the stream (its subscription came
    /// late, as OpenCode's can: see `Demux::subscribed`).
    late: bool,
    /// The answer of the next blocking `POST /session/ses_1/message`,
    /// which waits for it (or for its client to go away).
    answer: Mutex<Option<(&'static str, String)>>,
    /// How long a list of the session's messages takes to answer (a
    /// server slow to read, or hung).
    list_delay: Mutex<Duration>,
}

/// The fake server; dropping it stops it and joins its threads.
pub(crate) struct FakeServer {
    pub(crate) url: String,
    state: Arc<State>,
    frames: Sender<String>,
    accept: Option<JoinHandle<()>>,
    port: u16,
}

impl FakeServer {
    pub(crate) fn start() -> FakeServer {
        FakeServer::start_on(0, false)
    }

    /// A server whose event stream tells nothing of a stored prompt: the
    /// stream was subscribed after it (see `Demux::subscribed`).
    pub(crate) fn start_late() -> FakeServer {
        FakeServer::start_with(0, false, true)
    }

    /// A server on `port` (0: any), as a restarted server takes its
    /// predecessor's port; `silent`: its event stream never says
    /// `server.connected`.
    pub(crate) fn start_on(port: u16, silent: bool) -> FakeServer {
        FakeServer::start_with(port, silent, false)
    }

    fn start_with(port: u16, silent: bool, late: bool) -> FakeServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = channel();
        let state = Arc::new(State {
            messages: Mutex::new("[]".into()),
            frames: Mutex::new(Some(rx)),
            sender: Mutex::new(Some(tx.clone())),
            silent,
            late,
            ..State::default()
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    accept_state.streams.lock().unwrap().push(clone);
                }
                let state = Arc::clone(&accept_state);
                workers.push(std::thread::spawn(move || serve(stream, &state)));
            }
            for worker in workers {
                let _ = worker.join();
            }
        });
        FakeServer {
            url: format!("http://127.0.0.1:{port}"),
            state,
            frames: tx,
            accept: Some(accept),
            port,
        }
    }

    /// Sends one event (`{"id","type","properties"}`) on the stream.
    pub(crate) fn event(&self, payload: &str) {
        let _ = self.frames.send(format!("{{\"payload\":{payload}}}"));
    }

    /// Closes every open connection (the event stream included): a cut
    /// stream, which the client reconnects.
    pub(crate) fn cut(&self) {
        for stream in self.state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The request lines received so far (`GET /session/ses_1/message?limit=1`).
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Sends `payload` on the stream while the next `GET
    /// /session/ses_1/message` is served, 100 ms before its answer (an
    /// event that reached the client before that answer).
    pub(crate) fn event_on_next_list(&self, payload: &str) {
        *self.state.on_list.lock().unwrap() = Some(format!("{{\"payload\":{payload}}}"));
    }

    /// Answers the blocking `POST /session/ses_1/message` in flight (or
    /// the next one) with `json` (`{info, parts}`).
    pub(crate) fn answer(&self, json: &str) {
        *self.state.answer.lock().unwrap() = Some(("200 OK", json.to_string()));
    }

    /// Answers that POST with an error `status` (`500 Internal Server
    /// Error`) and `body`, as OpenCode does when it fails the prompt
    /// before replying.
    pub(crate) fn answer_error(&self, status: &'static str, body: &str) {
        *self.state.answer.lock().unwrap() = Some((status, body.to_string()));
    }

    /// Lists of the session's messages answer after `delay` from now on.
    pub(crate) fn delay_lists(&self, delay: Duration) {
        *self.state.list_delay.lock().unwrap() = delay;
    }

    pub(crate) fn set_messages(&self, json: &str) {
        *self.state.messages.lock().unwrap() = json.to_string();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for stream in self.state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// As OpenCode does when it stores a prompt: tells its message and its
/// part on the stream (the part proves the stream told the turn from its
/// start).
fn stored(state: &State, body: &[u8]) {
    if state.late {
        return;
    }
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|b| b["messageID"].as_str().map(str::to_string))
        .unwrap_or_default();
    let frames = [
        format!(
            r#"{{"id":"eu","type":"message.updated","properties":{{"sessionID":"ses_1","info":{{"id":"{id}","role":"user","sessionID":"ses_1","time":{{"created":1}}}}}}}}"#
        ),
        format!(
            r#"{{"id":"ep","type":"message.part.updated","properties":{{"sessionID":"ses_1","part":{{"id":"prt_u","sessionID":"ses_1","messageID":"{id}","type":"text","text":"hi"}}}}}}"#
        ),
    ];
    if let Some(tx) = state.sender.lock().unwrap().as_ref() {
        for frame in frames {
            let _ = tx.send(format!("{{\"payload\":{frame}}}"));
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let request = head.lines().next().unwrap_or("").to_string();
    let mut words = request.split(' ');
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    if method == "GET" && path.starts_with("/session/ses_1/message") && !path.contains("/message/")
    {
        let delay = *state.list_delay.lock().unwrap();
        std::thread::sleep(delay);
    }
    match (method, path) {
        ("GET", "/global/event") if state.silent => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
            );
            let _ = stream.flush();
            while !state.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        ("GET", "/global/event") => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                 data: {{\"payload\":{{\"id\":\"e0\",\"type\":\"server.connected\",\"properties\":{{}}}}}}\n\n"
            );
            let _ = stream.flush();
            let Some(frames) = state.frames.lock().unwrap().take() else {
                return;
            };
            while !state.stop.load(Ordering::SeqCst) {
                if let Ok(frame) = frames.recv_timeout(Duration::from_millis(50))
                    && write!(stream, "data: {frame}\n\n")
                        .and_then(|()| stream.flush())
                        .is_err()
                {
                    break;
                }
            }
            // For the next connection.
            *state.frames.lock().unwrap() = Some(frames);
        }
        ("GET", "/global/health") => {
            respond(&mut stream, "200 OK", r#"{"healthy":true,"version":"x"}"#)
        }
        ("GET", "/session/status") => respond(&mut stream, "200 OK", "{}"),
        ("POST", "/session") => respond(
            &mut stream,
            "200 OK",
            r#"{"id":"ses_1","title":"t","directory":"/","time":{"created":1,"updated":1}}"#,
        ),
        ("POST", p) if p.ends_with("/prompt_async") => {
            stored(state, &body);
            respond(&mut stream, "204 No Content", "")
        }
        ("POST", "/session/ses_1/message") => {
            stored(state, &body);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
            while !state.stop.load(Ordering::SeqCst) {
                if let Some((status, answer)) = state.answer.lock().unwrap().take() {
                    respond(&mut stream, status, &answer);
                    return;
                }
                // The client went away.
                if matches!(stream.peek(&mut [0u8]), Ok(0)) {
                    return;
                }
            }
        }
        ("POST", p) if p.ends_with("/abort") => respond(&mut stream, "200 OK", "true"),
        ("GET", p) if p.starts_with("/session/ses_1/message/") => {
            let id = p.rsplit('/').next().unwrap_or("");
            let body = format!(
                r#"{{"info":{{"id":"{id}","role":"user","sessionID":"ses_1","time":{{"created":1}}}},"parts":[]}}"#
            );
            respond(&mut stream, "200 OK", &body);
        }
        // The newest `limit` messages.
        ("GET", p) if p.starts_with("/session/ses_1/message?limit=") => {
            let limit: usize = p
                .rsplit('=')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let messages = state.messages.lock().unwrap().clone();
            let all: Vec<serde_json::Value> = serde_json::from_str(&messages).unwrap_or_default();
            let newest = &all[all.len().saturating_sub(limit)..];
            respond(
                &mut stream,
                "200 OK",
                &serde_json::to_string(newest).unwrap(),
            );
        }
        ("GET", "/session/ses_1/message") => {
            let event = state.on_list.lock().unwrap().take();
            if let Some(event) = event {
                let _ = state
                    .sender
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|tx| tx.send(event));
                std::thread::sleep(Duration::from_millis(100));
            }
            let messages = state.messages.lock().unwrap().clone();
            respond(&mut stream, "200 OK", &messages);
        }
        _ => respond(
            &mut stream,
            "404 Not Found",
            r#"{"name":"NotFoundError","data":{"message":"no"}}"#,
        ),
    }
}
