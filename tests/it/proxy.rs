//! A hand-written TCP fault proxy for the tests: it listens on 127.0.0.1 in front of one
//! address and, as each test chooses, passes bytes through, throttles them, cuts a connection
//! part-way through a request body, flips one byte of a request body, or answers `503` instead
//! of forwarding a request.
//!
//! It parses just enough HTTP/1.1 of the client's side to know where each request's body
//! starts and ends, with `Content-Length` or chunked framing; with chunked framing, offsets
//! count body data only, never the chunk-size lines, so a flipped byte always corrupts the
//! payload rather than the framing. Responses are copied as they come. It stops, cutting
//! every connection it holds, when dropped.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Which requests a fault applies to: a method and path patterns, where `*` stands for one
/// non-empty path segment. The query string is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    paths: Vec<String>,
}

impl Request {
    /// `method` on `path`.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            paths: vec![path.to_owned()],
        }
    }

    /// Also `path`, with the same method.
    pub fn or(mut self, path: &str) -> Self {
        self.paths.push(path.to_owned());
        self
    }

    /// Glance image data: `PUT /v2/images/*/file` and `PUT /v2/images/*/stage`.
    pub fn upload() -> Self {
        Self::new("PUT", "/v2/images/*/file").or("/v2/images/*/stage")
    }

    /// Whether a request line's method and target match.
    pub fn matches(&self, method: &str, target: &str) -> bool {
        let path = target.split('?').next().unwrap_or(target);
        method.eq_ignore_ascii_case(&self.method) && self.paths.iter().any(|p| glob(p, path))
    }
}

/// `pattern` against `path`, segment by segment; `*` matches one non-empty segment.
fn glob(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| (*p == "*" && !s.is_empty()) || p == s)
}

/// One fault. Counted faults act on the first `times` requests they match, across all
/// connections (`usize::MAX` for every one).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Client-to-server bytes are forwarded no faster than this, per connection.
    Throttle {
        /// Bytes per second.
        bytes_per_second: u64,
    },
    /// Forward the first `after` body bytes of a matching request, then cut both connections.
    DropAfter {
        /// Requests it applies to.
        request: Request,
        /// Body bytes forwarded before the cut.
        after: u64,
        /// How many requests it cuts.
        times: usize,
    },
    /// Invert the body data byte at `offset` (chunk framing not counted) of a matching request.
    FlipByte {
        /// Requests it applies to.
        request: Request,
        /// Offset in the body data.
        offset: u64,
        /// How many requests it corrupts.
        times: usize,
    },
    /// Let the first `skip` matching requests through, then cut the connection at the head of
    /// the next `times` ones, forwarding nothing of them: the call never reaches the server.
    CutBefore {
        /// Requests it applies to.
        request: Request,
        /// Matching requests let through first.
        skip: usize,
        /// How many requests it cuts.
        times: usize,
    },
    /// Forward a matching request, then cut both connections after `after` bytes of its
    /// response (head included): a download that breaks part-way.
    DropResponseAfter {
        /// Requests it applies to.
        request: Request,
        /// Response bytes passed before the cut.
        after: u64,
        /// How many requests it cuts.
        times: usize,
    },
    /// Replace `from` by `to` (the same length, so framing holds) in the response to a
    /// matching request: an answer a real server cannot be made to give on demand, such as
    /// an image whose status turned `killed`.
    RewriteResponse {
        /// Requests it applies to.
        request: Request,
        /// Bytes to find in the response.
        from: String,
        /// What they become.
        to: String,
        /// How many responses it rewrites.
        times: usize,
    },
    /// Swallow a matching request and never answer: the server accepted the connection and
    /// then says nothing.
    Stall {
        /// Requests it applies to.
        request: Request,
        /// How many requests it swallows.
        times: usize,
    },
    /// Answer `503 Service Unavailable` with `Connection: close` to a matching request,
    /// without forwarding any of it.
    Reject503 {
        /// Requests it applies to.
        request: Request,
        /// How many requests it answers.
        times: usize,
    },
}

/// A fault and how often it has acted.
#[derive(Debug)]
struct Armed {
    fault: Fault,
    used: usize,
    /// Matching requests seen (for `CutBefore`'s `skip`).
    seen: usize,
}

/// Counters of everything that went through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client-to-server bytes forwarded (heads, framing and bodies).
    pub bytes_up: u64,
    /// Server-to-client bytes forwarded.
    pub bytes_down: u64,
    /// Body data bytes forwarded for requests matching [`Request::upload`].
    pub upload_body_bytes: u64,
    /// Request lines seen, `METHOD target`, in order (rejected ones included).
    pub requests: Vec<String>,
    /// Requests answered with 503.
    pub rejected: usize,
    /// Bytes flipped.
    pub flipped: usize,
    /// Connections cut part-way through a body.
    pub dropped: usize,
    /// Connections accepted.
    pub connections: usize,
    /// Connections closed because the target refused them.
    pub target_unreachable: usize,
    /// Requests swallowed without an answer.
    pub stalled: usize,
    /// Responses cut part-way.
    pub responses_dropped: usize,
    /// Responses rewritten.
    pub rewritten: usize,
}

impl Stats {
    /// How many requests matched `request`.
    pub fn count(&self, request: &Request) -> usize {
        self.requests
            .iter()
            .filter(|line| {
                let mut parts = line.splitn(2, ' ');
                let method = parts.next().unwrap_or("");
                let target = parts.next().unwrap_or("");
                request.matches(method, target)
            })
            .count()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "up {} B, down {} B, upload body {} B, {} connection(s), rejected {}, flipped {}, \
             dropped {}, target unreachable {}; requests: {:?}",
            self.bytes_up,
            self.bytes_down,
            self.upload_body_bytes,
            self.connections,
            self.rejected,
            self.flipped,
            self.dropped,
            self.target_unreachable,
            self.requests
        )
    }
}

struct Shared {
    target: SocketAddr,
    faults: Mutex<Vec<Armed>>,
    stats: Mutex<Stats>,
    stop: AtomicBool,
    /// Both ends of every connection, so that dropping the proxy cuts them.
    sockets: Mutex<Vec<TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking pump thread must not hide the counters from the test that reads them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy. Dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral 127.0.0.1 port in front of `target`.
    pub fn start(target: SocketAddr, faults: Vec<Fault>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            faults: Mutex::new(
                faults
                    .into_iter()
                    .map(|fault| Armed {
                        fault,
                        used: 0,
                        seen: 0,
                    })
                    .collect(),
            ),
            stats: Mutex::new(Stats::default()),
            stop: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("fault-proxy-accept".into())
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn the proxy's accept thread")
        };
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault from now on (connections already open see it at their next request).
    pub fn add(&self, fault: Fault) {
        lock(&self.shared.faults).push(Armed {
            fault,
            used: 0,
            seen: 0,
        });
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Polls the counters until `done` holds, or panics after `limit` naming `what` and the
    /// counters. The limit is a safety net for a hung test, not a measured expectation.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "fault proxy: gave up after {limit:?} waiting for {what}; {stats}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees `stop` and returns.
        let _ = TcpStream::connect(self.addr);
        for socket in lock(&self.shared.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        lock(&shared.stats).connections += 1;
        let server = match TcpStream::connect(shared.target) {
            Ok(server) => server,
            Err(_) => {
                // As a dead server looks to a client: the connection closes.
                lock(&shared.stats).target_unreachable += 1;
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = clones else {
            continue;
        };
        {
            let mut sockets = lock(&shared.sockets);
            sockets.push(c3);
            sockets.push(s3);
        }
        if shared.stop.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let rewrite: Rewrite = Arc::new(Mutex::new(None));
        let down_shared = Arc::clone(shared);
        let down_budget = Arc::clone(&budget);
        let down_rewrite = Arc::clone(&rewrite);
        let hold = Arc::new(AtomicBool::new(false));
        let down_hold = Arc::clone(&hold);
        let _ = thread::Builder::new()
            .name("fault-proxy-down".into())
            .spawn(move || {
                copy_down(
                    s2,
                    c2,
                    &down_shared,
                    &down_budget,
                    &down_rewrite,
                    &down_hold,
                )
            });
        let up_shared = Arc::clone(shared);
        let _ = thread::Builder::new()
            .name("fault-proxy-up".into())
            .spawn(move || {
                let mut pump = Pump::new(client, server, up_shared, budget, rewrite, hold);
                pump.run();
            });
    }
}

/// Server to client, byte for byte, until `budget` (set by a `DropResponseAfter`) runs out.
fn copy_down(
    mut server: TcpStream,
    mut client: TcpStream,
    shared: &Shared,
    budget: &AtomicU64,
    rewrite: &Rewrite,
    hold_client: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut pending = lock(rewrite);
                if let Some((from, to)) = pending.as_ref() {
                    if let Some(at) = find(&buf[..n], from) {
                        buf[at..at + to.len()].copy_from_slice(to);
                        lock(&shared.stats).rewritten += 1;
                        *pending = None;
                    }
                }
                drop(pending);
                let left = budget.load(Ordering::SeqCst);
                let pass = (n as u64).min(left) as usize;
                if left != u64::MAX {
                    budget.store(left - pass as u64, Ordering::SeqCst);
                }
                if client.write_all(&buf[..pass]).is_err() {
                    break;
                }
                lock(&shared.stats).bytes_down += pass as u64;
                if pass < n || (left != u64::MAX && left == pass as u64) {
                    lock(&shared.stats).responses_dropped += 1;
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
    if !hold_client.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Write);
    }
}

/// Where the client-to-server parser stands.
#[derive(Debug)]
enum Phase {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// `remaining` body bytes of a `Content-Length` body.
    Length(u64),
    /// Collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// `remaining` data bytes of the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data; `remaining` bytes of it.
    ChunkEnd(u8),
    /// Collecting one trailer line (an empty one ends the body).
    Trailer(Vec<u8>),
}

/// What the faults decided for the request in flight.
#[derive(Debug, Default)]
struct Current {
    /// Body data offset of the next data byte.
    offset: u64,
    flip_at: Option<u64>,
    drop_after: Option<u64>,
    /// Answered 503: discard the body, then close.
    rejected: bool,
    /// Cut before forwarding anything.
    cut_before: bool,
    /// Swallowed: nothing is forwarded, nothing answered.
    stalled: bool,
    upload: bool,
}

/// How a run of bytes ended.
enum Step {
    Continue,
    /// Cut both connections now (a fault asked for it, or a socket failed).
    Cut,
}

/// The client-to-server direction of one connection.
struct Pump {
    client: TcpStream,
    server: TcpStream,
    shared: Arc<Shared>,
    phase: Phase,
    current: Current,
    /// For the throttle: when this connection started sending and how much it sent.
    since: Instant,
    sent: u64,
    /// Response bytes the other direction may still pass before cutting (`u64::MAX`: no cut).
    down_budget: Arc<AtomicU64>,
    /// A rewrite for the next response.
    rewrite: Rewrite,
    /// Set once a request was swallowed: the server's end of stream is not passed on.
    hold_client: Arc<AtomicBool>,
}

/// A rewrite of the next response on a connection: `(from, to)`.
type Rewrite = Arc<Mutex<Option<(Vec<u8>, Vec<u8>)>>>;

const MAX_HEAD: usize = 64 << 10;

impl Pump {
    fn new(
        client: TcpStream,
        server: TcpStream,
        shared: Arc<Shared>,
        down_budget: Arc<AtomicU64>,
        rewrite: Rewrite,
        hold_client: Arc<AtomicBool>,
    ) -> Self {
        Self {
            client,
            server,
            shared,
            phase: Phase::Head(Vec::new()),
            current: Current::default(),
            since: Instant::now(),
            sent: 0,
            down_budget,
            rewrite,
            hold_client,
        }
    }

    fn throttle(&self) -> Option<u64> {
        lock(&self.shared.faults)
            .iter()
            .find_map(|a| match a.fault {
                Fault::Throttle { bytes_per_second } => Some(bytes_per_second.max(1)),
                _ => None,
            })
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            // Small reads when throttled, so the rate is smooth rather than bursty.
            let want = match self.throttle() {
                Some(rate) => (rate / 20).clamp(256, buf.len() as u64) as usize,
                None => buf.len(),
            };
            let n = match self.client.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    let _ = self.server.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => n,
            };
            if let Step::Cut = self.feed(&mut buf[..n]) {
                self.cut();
                return;
            }
        }
    }

    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Forwards `bytes` to the server, honouring the throttle.
    fn forward(&mut self, bytes: &[u8]) -> Step {
        if bytes.is_empty() {
            return Step::Continue;
        }
        if self.current.rejected || self.current.stalled {
            return Step::Continue;
        }
        if let Some(rate) = self.throttle() {
            if self.sent == 0 {
                self.since = Instant::now();
            }
            let due = self.since + Duration::from_secs_f64(self.sent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
        if self.server.write_all(bytes).is_err() {
            return Step::Cut;
        }
        self.sent += bytes.len() as u64;
        lock(&self.shared.stats).bytes_up += bytes.len() as u64;
        Step::Continue
    }

    /// Runs the parser over one read, forwarding as it goes.
    fn feed(&mut self, bytes: &mut [u8]) -> Step {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &mut bytes[at..];
            let (used, step) = match &mut self.phase {
                Phase::Head(head) => {
                    let before = head.len();
                    head.extend_from_slice(rest);
                    match find(head, b"\r\n\r\n") {
                        Some(end) => {
                            let used = end + 4 - before;
                            head.truncate(end + 4);
                            let head = std::mem::take(head);
                            (used, self.start_request(&head))
                        }
                        None if head.len() > MAX_HEAD => (rest.len(), Step::Cut),
                        None => {
                            // Wait for the rest of the head before forwarding any of it.
                            (rest.len(), Step::Continue)
                        }
                    }
                }
                Phase::Length(remaining) => {
                    let n = (*remaining).min(rest.len() as u64) as usize;
                    *remaining -= n as u64;
                    let done = *remaining == 0;
                    let mut step = self.data(&mut rest[..n]);
                    if done && matches!(step, Step::Continue) {
                        step = self.end_request();
                    }
                    (n, step)
                }
                Phase::ChunkSize(line) => match rest.iter().position(|b| *b == b'\n') {
                    Some(nl) => {
                        line.extend_from_slice(&rest[..=nl]);
                        let size = chunk_size(line);
                        let framing = rest[..=nl].to_vec();
                        let step = self.forward(&framing);
                        self.phase = match size {
                            Some(0) => Phase::Trailer(Vec::new()),
                            Some(size) => Phase::ChunkData(size),
                            None => return Step::Cut,
                        };
                        (nl + 1, step)
                    }
                    None => {
                        line.extend_from_slice(rest);
                        let framing = rest.to_vec();
                        (rest.len(), self.forward(&framing))
                    }
                },
                Phase::ChunkData(remaining) => {
                    let n = (*remaining).min(rest.len() as u64) as usize;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.phase = Phase::ChunkEnd(2);
                    }
                    (n, self.data(&mut rest[..n]))
                }
                Phase::ChunkEnd(remaining) => {
                    let n = (*remaining as usize).min(rest.len());
                    *remaining -= n as u8;
                    if *remaining == 0 {
                        self.phase = Phase::ChunkSize(Vec::new());
                    }
                    let framing = rest[..n].to_vec();
                    (n, self.forward(&framing))
                }
                Phase::Trailer(line) => match rest.iter().position(|b| *b == b'\n') {
                    Some(nl) => {
                        line.extend_from_slice(&rest[..=nl]);
                        let blank = line.as_slice() == b"\r\n" || line.as_slice() == b"\n";
                        line.clear();
                        let framing = rest[..=nl].to_vec();
                        let step = self.forward(&framing);
                        if blank && matches!(step, Step::Continue) {
                            (nl + 1, self.end_request())
                        } else {
                            (nl + 1, step)
                        }
                    }
                    None => {
                        line.extend_from_slice(rest);
                        let framing = rest.to_vec();
                        (rest.len(), self.forward(&framing))
                    }
                },
            };
            if let Step::Cut = step {
                return Step::Cut;
            }
            at += used;
        }
        Step::Continue
    }

    /// A complete request head: decide the faults, answer or forward it, pick the framing.
    fn start_request(&mut self, head: &[u8]) -> Step {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or("").to_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        lock(&self.shared.stats)
            .requests
            .push(format!("{method} {target}"));

        let mut current = Current {
            upload: Request::upload().matches(&method, &target),
            ..Current::default()
        };
        for armed in lock(&self.shared.faults).iter_mut() {
            let (request, times) = match &armed.fault {
                Fault::Throttle { .. } => continue,
                Fault::DropAfter { request, times, .. }
                | Fault::FlipByte { request, times, .. }
                | Fault::CutBefore { request, times, .. }
                | Fault::DropResponseAfter { request, times, .. }
                | Fault::RewriteResponse { request, times, .. }
                | Fault::Stall { request, times }
                | Fault::Reject503 { request, times } => (request, *times),
            };
            if armed.used >= times || !request.matches(&method, &target) {
                continue;
            }
            armed.seen += 1;
            match armed.fault {
                Fault::CutBefore { skip, .. } if armed.seen <= skip => continue,
                Fault::CutBefore { .. } if !current.cut_before => current.cut_before = true,
                Fault::DropResponseAfter { after, .. } => {
                    self.down_budget.store(after, Ordering::SeqCst);
                }
                Fault::Stall { .. } if !current.stalled => current.stalled = true,
                Fault::RewriteResponse {
                    ref from, ref to, ..
                } => {
                    assert_eq!(from.len(), to.len(), "a rewrite keeps the length");
                    *lock(&self.rewrite) =
                        Some((from.clone().into_bytes(), to.clone().into_bytes()));
                }
                Fault::DropAfter { after, .. } if current.drop_after.is_none() => {
                    current.drop_after = Some(after);
                }
                Fault::FlipByte { offset, .. } if current.flip_at.is_none() => {
                    current.flip_at = Some(offset);
                }
                Fault::Reject503 { .. } if !current.rejected => current.rejected = true,
                _ => continue,
            }
            armed.used += 1;
        }
        self.current = current;
        self.phase = if chunked {
            Phase::ChunkSize(Vec::new())
        } else {
            match length {
                Some(n) if n > 0 => Phase::Length(n),
                _ => Phase::Head(Vec::new()),
            }
        };

        if self.current.cut_before {
            return self.drop_now();
        }
        if self.current.stalled {
            lock(&self.shared.stats).stalled += 1;
            // The server may close its idle side; the client must still hear nothing.
            self.hold_client.store(true, Ordering::SeqCst);
            // Its body, if any, is read and dropped by `forward`.
            return Step::Continue;
        }
        if self.current.rejected {
            lock(&self.shared.stats).rejected += 1;
            // The request never reaches the server; the client gets the answer at once and
            // its body is read and discarded (so closing does not reset the connection under
            // the answer), then the connection closes. The server side is closed only after
            // the answer is written: its end of stream also ends the client's write side.
            let body = "{\"message\": \"fault proxy: service unavailable\"}";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if self.client.write_all(answer.as_bytes()).is_err() {
                return Step::Cut;
            }
            let _ = self.client.flush();
            let _ = self.server.shutdown(Shutdown::Both);
            if matches!(self.phase, Phase::Head(_)) {
                return Step::Cut;
            }
            return Step::Continue;
        }
        if let Step::Cut = self.forward(head) {
            return Step::Cut;
        }
        if let (Phase::Head(_), Some(0)) = (&self.phase, self.current.drop_after) {
            return self.drop_now();
        }
        Step::Continue
    }

    /// Body data bytes: count, flip, cut, forward.
    fn data(&mut self, bytes: &mut [u8]) -> Step {
        let start = self.current.offset;
        let end = start + bytes.len() as u64;
        if let Some(at) = self.current.flip_at {
            if (start..end).contains(&at) {
                bytes[(at - start) as usize] ^= 0xFF;
                lock(&self.shared.stats).flipped += 1;
            }
        }
        let mut allowed = bytes.len();
        let mut cut = false;
        if let Some(after) = self.current.drop_after {
            if end > after {
                allowed = after.saturating_sub(start) as usize;
                cut = true;
            }
        }
        self.current.offset += allowed as u64;
        if self.current.upload && !self.current.rejected {
            lock(&self.shared.stats).upload_body_bytes += allowed as u64;
        }
        if let Step::Cut = self.forward(&bytes[..allowed]) {
            return Step::Cut;
        }
        if cut {
            return self.drop_now();
        }
        Step::Continue
    }

    fn drop_now(&mut self) -> Step {
        lock(&self.shared.stats).dropped += 1;
        Step::Cut
    }

    /// The body ended: a rejected request closes the connection, others wait for the next.
    fn end_request(&mut self) -> Step {
        let rejected = self.current.rejected;
        self.phase = Phase::Head(Vec::new());
        self.current = Current::default();
        if rejected {
            Step::Cut
        } else {
            Step::Continue
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The size of a chunk-size line (`1a2b;ext=1\r\n`), `None` when it is not hex.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text
        .trim_end_matches(['\r', '\n'])
        .split(';')
        .next()?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    //! The proxy itself, against a tiny HTTP server and a raw echo server on 127.0.0.1,
    //! with requests written by hand so that the framing is exactly what each test needs.

    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;

    /// A request as the server decoded it.
    #[derive(Debug)]
    struct Got {
        method: String,
        target: String,
        body: Vec<u8>,
        /// The connection ended before the body was complete.
        truncated: bool,
    }

    /// A tiny HTTP/1.1 server: decodes `Content-Length` and chunked bodies, answers
    /// `200 ok` with keep-alive, and reports every request on the channel.
    fn http_server() -> (SocketAddr, mpsc::Receiver<Got>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                thread::spawn(move || serve(conn, &tx));
            }
        });
        (addr, rx)
    }

    fn serve(conn: TcpStream, tx: &mpsc::Sender<Got>) {
        let mut writer = conn.try_clone().unwrap();
        let mut reader = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_owned();
            let target = parts.next().unwrap_or("").to_owned();
            let (mut length, mut chunked) = (0usize, false);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                    chunked = true;
                }
            }
            let mut body = Vec::new();
            let mut truncated = false;
            if chunked {
                loop {
                    let mut size = String::new();
                    if reader.read_line(&mut size).unwrap_or(0) == 0 {
                        truncated = true;
                        break;
                    }
                    let size = usize::from_str_radix(size.trim(), 16).unwrap();
                    let mut data = vec![0u8; size + 2];
                    if reader.read_exact(&mut data).is_err() {
                        truncated = true;
                        break;
                    }
                    if size == 0 {
                        break;
                    }
                    body.extend_from_slice(&data[..size]);
                }
            } else {
                let mut chunk = [0u8; 4096];
                while body.len() < length {
                    let want = (length - body.len()).min(chunk.len());
                    match reader.read(&mut chunk[..want]) {
                        Ok(0) | Err(_) => {
                            truncated = true;
                            break;
                        }
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
            }
            let _ = tx.send(Got {
                method,
                target,
                body,
                truncated,
            });
            if truncated {
                return;
            }
            if writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// A chunked request with chunks of `chunk` bytes, written a few bytes per `write` so the
    /// proxy's parser meets heads and chunk-size lines split across reads.
    fn chunked(method: &str, target: &str, body: &[u8], chunk: usize) -> Vec<u8> {
        let mut out =
            format!("{method} {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                .into_bytes();
        for part in body.chunks(chunk) {
            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    fn with_length(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn send_in_pieces(conn: &mut TcpStream, bytes: &[u8], piece: usize) {
        for part in bytes.chunks(piece) {
            conn.write_all(part).unwrap();
        }
    }

    /// Reads one response: status line and, with `Content-Length`, its body.
    fn response(reader: &mut BufReader<TcpStream>) -> Option<(u16, String, String)> {
        let mut status = String::new();
        if reader.read_line(&mut status).ok()? == 0 {
            return None;
        }
        let code = status.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            headers.push_str(&line);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        Some((code, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    fn connect(proxy: &Proxy) -> (TcpStream, BufReader<TcpStream>) {
        let conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_nodelay(true).unwrap();
        let reader = BufReader::new(conn.try_clone().unwrap());
        (conn, reader)
    }

    fn recv(rx: &mpsc::Receiver<Got>) -> Got {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the test server received a request")
    }

    #[test]
    fn glob_matches_one_segment_per_star_and_ignores_the_query() {
        let upload = Request::upload();
        assert!(upload.matches("PUT", "/v2/images/abc-1/file"));
        assert!(upload.matches("put", "/v2/images/abc-1/stage?x=1"));
        assert!(!upload.matches("GET", "/v2/images/abc-1/file"));
        assert!(!upload.matches("PUT", "/v2/images//file"));
        assert!(!upload.matches("PUT", "/v2/images/a/b/file"));
        assert!(!upload.matches("PUT", "/v2/images/abc-1"));
        assert_eq!(chunk_size(b"1a;ext=x\r\n"), Some(26));
        assert_eq!(chunk_size(b"zz\r\n"), None);
    }

    #[test]
    fn fault_proxy_passes_raw_bytes_both_ways_and_counts_them() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        thread::spawn(move || {
            for conn in echo.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut back = conn.try_clone().unwrap();
                thread::spawn(move || {
                    let _ = io::copy(&mut conn, &mut back);
                });
            }
        });
        let proxy = Proxy::start(target, vec![]);
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        // Not HTTP at all: with no `\r\n\r\n` the proxy holds it as an unfinished head, so
        // send a complete (odd) head and then raw bytes of a Content-Length body.
        let body = pattern(100_000);
        let request = with_length("ECHO", "/raw", &body);
        conn.write_all(&request).unwrap();
        let mut back = vec![0u8; request.len()];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(back, request);
        drop(conn);
        let stats = proxy.wait_for("both directions counted", Duration::from_secs(30), |s| {
            s.bytes_down == request.len() as u64
        });
        assert_eq!(stats.bytes_up, request.len() as u64, "{stats}");
        assert_eq!(stats.requests, vec!["ECHO /raw".to_owned()]);
        assert_eq!(stats.upload_body_bytes, 0);
    }

    #[test]
    fn fault_proxy_flips_one_data_byte_of_a_chunked_upload_never_the_framing() {
        let (target, rx) = http_server();
        let proxy = Proxy::start(
            target,
            vec![Fault::FlipByte {
                request: Request::upload(),
                offset: 1000,
                times: 1,
            }],
        );
        let body = pattern(5000);
        let (mut conn, mut reader) = connect(&proxy);

        // Not an upload: passes untouched even though the fault is armed.
        conn.write_all(&with_length("PATCH", "/v2/images/i1", &body))
            .unwrap();
        assert_eq!(response(&mut reader).unwrap().0, 200);
        let got = recv(&rx);
        assert_eq!((got.method.as_str(), got.body == body), ("PATCH", true));

        // Chunks of 7 bytes (hex size lines included): offset 1000 lies in data, and the
        // count of data bytes only puts it where the server sees it.
        send_in_pieces(
            &mut conn,
            &chunked("PUT", "/v2/images/i1/file", &body, 7),
            13,
        );
        assert_eq!(response(&mut reader).unwrap().0, 200);
        let got = recv(&rx);
        assert!(!got.truncated);
        assert_eq!(got.target, "/v2/images/i1/file");
        assert_eq!(got.body.len(), body.len());
        let differ: Vec<usize> = (0..body.len())
            .filter(|&i| got.body[i] != body[i])
            .collect();
        assert_eq!(differ, vec![1000]);
        assert_eq!(got.body[1000], body[1000] ^ 0xFF);

        // `times: 1`: the next upload on the same keep-alive connection is intact.
        conn.write_all(&chunked("PUT", "/v2/images/i2/stage", &body, 4096))
            .unwrap();
        assert_eq!(response(&mut reader).unwrap().0, 200);
        assert_eq!(recv(&rx).body, body);

        let stats = proxy.stats();
        assert_eq!(stats.flipped, 1, "{stats}");
        assert_eq!(stats.upload_body_bytes, 2 * body.len() as u64, "{stats}");
        assert_eq!(stats.count(&Request::upload()), 2, "{stats}");
    }

    #[test]
    fn fault_proxy_flips_a_byte_of_a_content_length_body_too() {
        let (target, rx) = http_server();
        let proxy = Proxy::start(
            target,
            vec![Fault::FlipByte {
                request: Request::upload(),
                offset: 0,
                times: usize::MAX,
            }],
        );
        let body = pattern(300);
        let (mut conn, mut reader) = connect(&proxy);
        for _ in 0..2 {
            send_in_pieces(
                &mut conn,
                &with_length("PUT", "/v2/images/x/file", &body),
                50,
            );
            assert_eq!(response(&mut reader).unwrap().0, 200);
            let got = recv(&rx);
            assert_eq!(got.body[0], body[0] ^ 0xFF);
            assert_eq!(got.body[1..], body[1..]);
        }
        assert_eq!(proxy.stats().flipped, 2);
    }

    #[test]
    fn fault_proxy_answers_503_to_the_first_matching_request_only() {
        let (target, rx) = http_server();
        let proxy = Proxy::start(
            target,
            vec![Fault::Reject503 {
                request: Request::new("PUT", "/v2/images/*/file"),
                times: 1,
            }],
        );
        let body = pattern(200_000);

        // A GET before it passes on the same connection.
        let (mut conn, mut reader) = connect(&proxy);
        conn.write_all(b"GET /v2/images HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(response(&mut reader).unwrap().0, 200);
        assert_eq!(recv(&rx).method, "GET");

        conn.write_all(&chunked("PUT", "/v2/images/a/file", &body, 8192))
            .unwrap();
        let (code, headers, text) = response(&mut reader).unwrap();
        assert_eq!(code, 503);
        assert!(
            headers.to_ascii_lowercase().contains("connection: close"),
            "{headers}"
        );
        assert!(text.contains("service unavailable"), "{text}");
        // And the connection closes after the answer.
        assert!(response(&mut reader).is_none());

        let (mut conn, mut reader) = connect(&proxy);
        conn.write_all(&chunked("PUT", "/v2/images/a/file", &body, 8192))
            .unwrap();
        assert_eq!(response(&mut reader).unwrap().0, 200);
        let got = recv(&rx);
        assert_eq!((got.method.as_str(), got.body == body), ("PUT", true));
        // The rejected request never reached the server.
        assert!(rx.try_recv().is_err());

        let stats = proxy.stats();
        assert_eq!(stats.rejected, 1, "{stats}");
        assert_eq!(
            stats.count(&Request::new("PUT", "/v2/images/*/file")),
            2,
            "{stats}"
        );
        assert_eq!(stats.upload_body_bytes, body.len() as u64, "{stats}");
    }

    #[test]
    fn fault_proxy_cuts_the_connection_after_n_body_bytes() {
        let (target, rx) = http_server();
        let proxy = Proxy::start(
            target,
            vec![Fault::DropAfter {
                request: Request::upload(),
                after: 12_345,
                times: 1,
            }],
        );
        let body = pattern(100_000);
        let (mut conn, mut reader) = connect(&proxy);
        // The client may see its writes fail once the proxy cuts: that is the point.
        let _ = conn.write_all(&chunked("PUT", "/v2/images/a/stage", &body, 1000));
        assert!(response(&mut reader).is_none(), "no answer after a cut");
        let got = recv(&rx);
        assert!(got.truncated);
        assert_eq!(
            got.body.len(),
            12_000,
            "whole chunks before the cut reach it"
        );
        let stats = proxy.wait_for("the cut", Duration::from_secs(30), |s| s.dropped == 1);
        assert_eq!(stats.upload_body_bytes, 12_345, "{stats}");
    }

    #[test]
    fn fault_proxy_throttle_holds_the_upload_to_its_rate() {
        let (target, rx) = http_server();
        let rate = 200_000;
        let proxy = Proxy::start(
            target,
            vec![Fault::Throttle {
                bytes_per_second: rate,
            }],
        );
        let body = pattern(100_000);
        let (mut conn, mut reader) = connect(&proxy);
        let started = Instant::now();
        conn.write_all(&with_length("PUT", "/v2/images/a/file", &body))
            .unwrap();
        assert_eq!(response(&mut reader).unwrap().0, 200);
        let took = started.elapsed();
        assert_eq!(recv(&rx).body, body);
        // A lower bound only (the throttle cannot be beaten); a slow machine only adds time.
        // The first read goes out at once, hence one read's worth off the ideal time.
        let floor = Duration::from_secs_f64((body.len() as u64 - rate / 20) as f64 / rate as f64);
        assert!(
            took >= floor,
            "took {took:?}, the throttle allows {floor:?} at least"
        );
    }

    #[test]
    fn fault_proxy_closes_connections_when_the_target_is_down_and_stops_when_dropped() {
        // A port that was just free: nothing listens there.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = Proxy::start(dead, vec![]);
        let (mut conn, mut reader) = connect(&proxy);
        let _ = conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(response(&mut reader).is_none());
        proxy.wait_for("the refused target", Duration::from_secs(30), |s| {
            s.target_unreachable == 1
        });

        let addr = proxy.addr();
        drop(proxy);
        assert!(
            TcpStream::connect(addr).is_err(),
            "the listener is closed after drop"
        );
    }
}
