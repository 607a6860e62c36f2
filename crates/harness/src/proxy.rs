//! A TCP proxy on loopback that can play a network fault between a client
//! and a server: a silent partition (nothing passes either way, and
//! connections stay open, as when a cable is pulled), or a cut (every
//! connection closed at once, as when a server restarts).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct State {
    target: SocketAddr,
    paused: AtomicBool,
    accepted: AtomicUsize,
    /// Both ends of every connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
}

impl State {
    fn wait_while_paused(&self) {
        while self.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Forwards connections to one server; runs as long as the process.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (`h:p`).
    pub fn start(target: &str) -> Proxy {
        let target = std::net::ToSocketAddrs::to_socket_addrs(target)
            .expect("a target address")
            .next()
            .expect("a target address");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target,
            paused: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                std::thread::spawn(move || forward(client, s));
            }
        });
        Proxy { addr, state }
    }

    /// The proxy's address, for clients.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// A silent partition: nothing passes either way (and new connections
    /// reach nothing) until [`Proxy::resume`]; bytes sent meanwhile arrive then.
    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::SeqCst);
    }

    /// Closes every open connection, both ends.
    pub fn cut(&self) {
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn forward(client: TcpStream, state: Arc<State>) {
    state.wait_while_paused();
    let Ok(server) = TcpStream::connect(state.target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut open = state.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let st = state.clone();
    std::thread::spawn(move || pump(c2, s2, st));
    pump(server, client, state);
}

/// Copies `from` to `to` until either closes, holding bytes while paused.
fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<State>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        state.wait_while_paused();
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                state.wait_while_paused();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
