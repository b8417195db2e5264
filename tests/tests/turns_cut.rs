//! End-to-end tests of a turn whose event stream is interrupted mid-turn,
//! against the real opencode server with the mock model: the stream's
//! connection closed (and new ones refused for a while, so the turn's end
//! falls in the gap) still ends the turn done, through reconcile; a server
//! SIGSTOPped for less than the stall window, then SIGCONTed, too.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{Reply, Script, TestBed, e2e_skipped};
use opencode_api::{Client, NewSession, PromptRequest};
use turns::{Engine, TurnEvent, TurnOptions};

const WAIT: Duration = Duration::from_secs(60);
/// The mock's reply: one chunk a word, 200 ms apart (about 3 s in all).
const REPLY: &str = "one two three four five six seven eight nine ten eleven twelve \
                     thirteen fourteen fifteen sixteen";

#[derive(Default)]
struct ProxyState {
    stop: AtomicBool,
    /// Until when new event-stream connections are closed at once.
    refuse_streams_until: Mutex<Option<Instant>>,
    /// The client side of every open event-stream connection.
    streams: Mutex<Vec<TcpStream>>,
    /// Both sides of every connection, to end them all on drop.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A loopback TCP forwarder in front of the server that can cut the event
/// stream (`GET /global/event`) while every other request goes through.
struct StreamCutter {
    url: String,
    port: u16,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl StreamCutter {
    fn start(upstream_port: u16) -> StreamCutter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let state = Arc::clone(&accept_state);
                let handle = std::thread::spawn(move || forward(client, upstream_port, &state));
                accept_state.threads.lock().unwrap().push(handle);
            }
        });
        StreamCutter {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
            accept: Some(accept),
        }
    }

    /// Closes the open event streams and closes new ones at once for
    /// `refuse`.
    fn cut_streams(&self, refuse: Duration) {
        *self.state.refuse_streams_until.lock().unwrap() = Some(Instant::now() + refuse);
        for stream in self.state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for StreamCutter {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in self.state.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = self.state.threads.lock().unwrap().drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Forwards one connection both ways until either side ends.
fn forward(client: TcpStream, upstream_port: u16, state: &ProxyState) {
    // The request line tells an event stream from the other requests.
    const STREAM: &[u8] = b"GET /global/event";
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = [0u8; STREAM.len()];
    let mut seen = 0;
    loop {
        match client.peek(&mut head) {
            Ok(0) | Err(_) => return,
            Ok(n) if n == head.len() || !STREAM.starts_with(&head[..n]) => {
                seen = n;
                break;
            }
            Ok(n) => {
                if n == seen {
                    std::thread::sleep(Duration::from_millis(5));
                }
                seen = n;
            }
        }
    }
    let _ = client.set_read_timeout(None);
    let is_stream = &head[..seen] == STREAM;
    if is_stream {
        let refused = state
            .refuse_streams_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until);
        if refused {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if let Ok(clone) = client.try_clone() {
            state.streams.lock().unwrap().push(clone);
        }
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        return;
    };
    for socket in [&client, &upstream] {
        if let Ok(clone) = socket.try_clone() {
            state.sockets.lock().unwrap().push(clone);
        }
    }
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = std::io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upstream_read.shutdown(Shutdown::Both);
    let _ = up.join();
}

/// Waits for the turn's first text: the model is mid-reply.
fn first_text(turn: &mut turns::Turn) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        match turn.next(deadline).unwrap() {
            Some(TurnEvent::Text { delta, .. }) => return delta,
            Some(e) if e.is_terminal() => panic!("ended before any text: {e:?}"),
            Some(_) => {}
            None => panic!("no text within {WAIT:?}"),
        }
    }
}

/// Follows the turn to its end: the text streamed, and the last event.
fn rest_of(turn: &mut turns::Turn, mut text: String) -> (String, TurnEvent) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while let Some(event) = turn.next(deadline).unwrap() {
        if let TurnEvent::Text { delta, .. } = &event {
            text.push_str(delta);
        }
        last = Some(event);
    }
    (text, last.expect("a terminal event"))
}

fn bed() -> TestBed {
    TestBed::with_script(
        Script::new().default_reply(Reply::text(REPLY).chunk_delay(Duration::from_millis(200))),
    )
}

#[test]
fn a_turn_whose_event_stream_is_cut_mid_turn_ends_done_through_reconcile() {
    if e2e_skipped() {
        return;
    }
    let bed = bed();
    let server = bed.start_opencode();
    let cutter = StreamCutter::start(server.port);
    let client = Client::builder(&cutter.url)
        .directory(&bed.project)
        .build()
        .unwrap();
    let engine = Engine::new(client.clone(), TurnOptions::default());
    let session = client
        .create_session(&NewSession::titled("cut"))
        .unwrap()
        .id;
    let mut turn = engine
        .prompt(&session, PromptRequest::text("talk slowly"))
        .unwrap();
    let text = first_text(&mut turn);
    // The stream is gone until well after the reply ends: its last deltas
    // and the terminal events are never seen.
    let refuse = Duration::from_secs(8);
    cutter.cut_streams(refuse);
    let cut = Instant::now();
    let (streamed, last) = rest_of(&mut turn, text);
    let TurnEvent::Done(done) = last else {
        panic!("the turn did not end done: {last:?}")
    };
    assert_eq!(done.text, REPLY, "the whole reply, read from the messages");
    // What the gap lost is handed out from the messages: the text events
    // still add up to the reply, once.
    assert_eq!(streamed, REPLY);
    // Ended while the stream was still refused: the messages told, not
    // the stream.
    assert!(cut.elapsed() < refuse, "{:?}", cut.elapsed());
    let messages = client.list_messages(&session, None).unwrap();
    assert_eq!(messages.len(), 2, "one prompt, one reply");
}

#[test]
fn a_server_stopped_for_less_than_the_stall_window_still_ends_the_turn_done() {
    if e2e_skipped() {
        return;
    }
    let bed = bed();
    let server = bed.start_opencode();
    let client = Client::builder(&server.url)
        .directory(&bed.project)
        .build()
        .unwrap();
    // Stopped 3 s: far below the stream's stall window (25 s) and the
    // watchdog (180 s).
    let stopped = Duration::from_secs(3);
    let engine = Engine::new(client.clone(), TurnOptions::default());
    let session = client
        .create_session(&NewSession::titled("stop"))
        .unwrap()
        .id;
    let mut turn = engine
        .prompt(&session, PromptRequest::text("talk slowly"))
        .unwrap();
    let text = first_text(&mut turn);
    assert!(e2e::send_signal(server.pid as i32, libc::SIGSTOP));
    std::thread::sleep(stopped);
    assert!(e2e::send_signal(server.pid as i32, libc::SIGCONT));
    let (streamed, last) = rest_of(&mut turn, text);
    let TurnEvent::Done(done) = last else {
        panic!("the turn did not end done: {last:?}")
    };
    assert_eq!(done.text, REPLY);
    assert_eq!(streamed, REPLY, "every delta once, none lost");
    let messages = client.list_messages(&session, None).unwrap();
    assert_eq!(messages.len(), 2, "one prompt, one reply");
}

/// The cutter passes a request through untouched.
#[test]
fn the_stream_cutter_forwards_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut got = [0u8; 5];
        socket.read_exact(&mut got).unwrap();
        std::io::Write::write_all(&mut socket, b"pong").unwrap();
        got
    });
    let cutter = StreamCutter::start(port);
    let mut socket = TcpStream::connect(("127.0.0.1", cutter.port)).unwrap();
    std::io::Write::write_all(&mut socket, b"ping!").unwrap();
    let mut answer = [0u8; 4];
    socket.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"pong");
    assert_eq!(&server.join().unwrap(), b"ping!");
}
