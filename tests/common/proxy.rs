//! A TCP proxy between a node and PostgreSQL that a test can cut and restore: the database
//! going away and coming back, as a network partition or a restarted server would make it,
//! without touching the server every other test shares.
//!
//! Every connection the node opens through it (the pool's, the `LISTEN` connection, the
//! session that holds the serving lock) is forwarded byte for byte by two threads.
//! [`Proxy::cut`] shuts down every live connection both ways and, until [`Proxy::restore`],
//! closes each new one as soon as it is accepted: the node sees its connections end and its
//! reconnects fail. [`Proxy::cut_at`] cuts the same way at a chosen moment of the protocol
//! (a `COMMIT` about to reach the server, or just sent), where a cut at random would rarely
//! land. Plain threads, not tasks: the proxy works the same whatever runtime a test has, and
//! a cut takes effect while the test's own runtime is busy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What a node sends to commit an append, for [`Proxy::cut_at`]: the insert of its events
/// (in the statement's text), then `COMMIT` (a simple-query message, as
/// `batch_execute("COMMIT")` sends it). A scan's `COMMIT`, or another transaction's, does
/// not match.
pub const APPEND_COMMIT: [&[u8]; 2] = [b"INSERT INTO events", b"COMMIT\0"];

/// Where [`Proxy::cut_at`] cuts, around the bytes it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// They never reach the server.
    Before,
    /// They reach the server; nothing comes back after them (not its answer).
    After,
}

/// A proxy on `127.0.0.1:<port>` forwarding to one target; stopped (and every connection
/// through it ended) when dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    stopped: AtomicBool,
    next_id: AtomicU64,
    /// Whether connections are cut, the armed trigger, and both ends of every live
    /// connection, by id: one lock, so that a connection accepted while a cut begins is
    /// either ended by the cut or refused.
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    cut: bool,
    trigger: Option<Trigger>,
    /// Counts the triggers armed, so that a connection starts afresh on each.
    armed: u64,
    live: HashMap<u64, [TcpStream; 2]>,
}

/// A cut armed by [`Proxy::cut_at`].
struct Trigger {
    steps: Vec<Vec<u8>>,
    when: Cut,
}

impl Links {
    fn cut(&mut self) {
        self.cut = true;
        self.trigger = None;
        for (_, ends) in self.live.drain() {
            shut(&ends);
        }
    }
}

impl Shared {
    fn links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends connection `id` both ways, if it is still live.
    fn end(&self, id: u64) {
        if let Some(ends) = self.links().live.remove(&id) {
            shut(&ends);
        }
    }
}

fn shut(ends: &[TcpStream]) {
    for end in ends {
        let _ = end.shutdown(Shutdown::Both);
    }
}

impl Proxy {
    /// A proxy in front of the PostgreSQL server of `url` (`postgres://…@host:port/…`), and
    /// `url` with its host and port replaced by the proxy's.
    pub fn for_database(url: &str) -> (Proxy, String) {
        let (before, host_port, after) = split_url(url);
        let has_port = host_port.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
        let target = if has_port { host_port.to_owned() } else { format!("{host_port}:5432") };
        let proxy = Proxy::start(target.as_str());
        let through = format!("{before}127.0.0.1:{}{after}", proxy.port());
        (proxy, through)
    }

    /// A proxy forwarding to `target`, accepting at once.
    pub fn start(target: impl ToSocketAddrs) -> Proxy {
        let target = target.to_socket_addrs().expect("resolve the proxy's target").next().expect("an address for the proxy's target");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared =
            Arc::new(Shared { target, stopped: AtomicBool::new(false), next_id: AtomicU64::new(0), links: Mutex::new(Links::default()) });
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new().name("proxy-accept".into()).spawn(move || accept(&listener, &accepting)).expect("spawn the proxy");
        Proxy { port, shared }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Ends every live connection both ways, and ends each new one on arrival until
    /// [`Proxy::restore`].
    pub fn cut(&self) {
        self.shared.links().cut();
    }

    /// Cuts as [`Proxy::cut`] does once a client has sent each of `steps` in turn on one
    /// connection (each seen within one read), just before or just after the last is
    /// forwarded. Once; see [`Proxy::is_cut`].
    pub fn cut_at(&self, steps: &[&[u8]], when: Cut) {
        assert!(!steps.is_empty(), "a trigger waits for at least one step");
        let mut links = self.shared.links();
        links.trigger = Some(Trigger { steps: steps.iter().map(|step| step.to_vec()).collect(), when });
        links.armed += 1;
    }

    /// Whether connections are cut now (by [`Proxy::cut`], or by a trigger that fired).
    pub fn is_cut(&self) -> bool {
        self.shared.links().cut
    }

    /// Forwards new connections again (and disarms a trigger that has not fired).
    pub fn restore(&self) {
        let mut links = self.shared.links();
        links.cut = false;
        links.trigger = None;
    }

    /// How many connections are forwarded now.
    pub fn live(&self) -> usize {
        self.shared.links().live.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.cut();
        // Wakes the accepting thread, which then sees it is stopped.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// `url` as (what comes before the host, `host:port`, what follows it).
fn split_url(url: &str) -> (&str, &str, &str) {
    let scheme_end = url.find("://").map(|at| at + 3).unwrap_or_else(|| panic!("not a postgres:// URL: {url}"));
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = rest[..authority_len].rfind('@').map_or(0, |at| at + 1);
    let host_port = &rest[host_start..authority_len];
    assert!(!host_port.is_empty() && !host_port.contains(','), "one host expected in {url}");
    (&url[..scheme_end + host_start], host_port, &rest[authority_len..])
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.links().cut {
            shut(&[client]);
            continue;
        }
        // Connecting to a local server is quick; a failure ends the client's connection.
        let Ok(server) = TcpStream::connect(shared.target) else {
            shut(&[client]);
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let ends = [client, server];
        let Some([client_in, server_out, server_in, client_out]) = handles(&ends) else {
            shut(&ends);
            continue;
        };
        {
            let mut links = shared.links();
            if links.cut {
                // Cut while connecting to the target.
                shut(&ends);
                continue;
            }
            links.live.insert(id, ends);
        }
        for (name, from, to, upstream) in [("proxy-up", client_in, server_out, true), ("proxy-down", server_in, client_out, false)] {
            let pumping = Arc::clone(shared);
            let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
                pump(from, to, &pumping, id, upstream);
                pumping.end(id);
            });
            if spawned.is_err() {
                shared.end(id);
            }
        }
    }
}

/// A handle on each end for each direction: (client, server, server, client).
fn handles(ends: &[TcpStream; 2]) -> Option<[TcpStream; 4]> {
    let [client, server] = ends;
    Some([client.try_clone().ok()?, server.try_clone().ok()?, server.try_clone().ok()?, client.try_clone().ok()?])
}

/// Copies `from` to `to` until either ends, or connection `id` is cut; the caller then ends
/// the connection both ways (PostgreSQL's protocol has no use for a half-closed connection).
/// Each read is forwarded only while the connection is live, so that nothing read after a
/// cut goes through; from a client (`upstream`), it is first looked at by an armed trigger.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, id: u64, upstream: bool) {
    let mut buffer = [0u8; 16 * 1024];
    // The trigger this connection is on, and how many of its steps it has sent.
    let (mut armed, mut seen) = (0, 0);
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => &buffer[..n],
        };
        let mut links = shared.links();
        if !links.live.contains_key(&id) {
            return;
        }
        if armed != links.armed {
            (armed, seen) = (links.armed, 0);
        }
        let mut fired = None;
        if let Some(trigger) = links.trigger.as_ref().filter(|_| upstream) {
            let step = &trigger.steps[seen];
            if read.windows(step.len()).any(|w| w == step.as_slice()) {
                seen += 1;
                if seen == trigger.steps.len() {
                    fired = Some(trigger.when);
                }
            }
        }
        match fired {
            None => {
                // Not under the lock: a write may wait for a slow reader.
                drop(links);
                if to.write_all(read).is_err() {
                    return;
                }
            }
            Some(Cut::Before) => return links.cut(),
            Some(Cut::After) => {
                // Under the lock: the answer is read only after this write, and by then the
                // connection is no longer live, so it is never forwarded.
                let _ = to.write_all(read);
                return links.cut();
            }
        }
    }
}
