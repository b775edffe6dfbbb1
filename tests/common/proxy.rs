//! A TCP proxy on loopback that a test can break, for outages caused for
//! real (PostgreSQL, Redis): the service under test connects through it,
//! and the test cuts, black-holes and restores the path.
//!
//! - `cut`: the server is gone. Open connections are closed and new ones
//!   are closed as soon as they are accepted.
//! - `black_hole`: the server hangs. Connections, open and new, stay open
//!   and whatever the client sends is read and thrown away, but nothing ever
//!   comes back — only a timeout gets the client out.
//! - `lose_replies`: the answers are lost. What the client sends still
//!   reaches the server, on open connections and new ones, but nothing the
//!   server answers reaches the client (a reply lost after a COMMIT); a
//!   `cut` then breaks the connections.
//! - `restore`: new connections are forwarded again. Connections opened or
//!   stalled during an outage are closed (what they sent is lost, so they
//!   could not be resumed).
//!
//! `cut` and `black_hole` return once no connection forwards to the server
//! any more (a cut one is closed by then), so what the test sends next meets
//! the outage.
//!
//! The proxy runs on a runtime of its own, so sync and async tests use it
//! alike; it stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Cut,
    BlackHole,
    LoseReplies,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    /// Connections that may still forward to the server.
    forwarding: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// How long `cut` and `black_hole` wait for open connections to stop.
const STOP_FORWARDING: Duration = Duration::from_secs(5);

impl Proxy {
    /// Listens on 127.0.0.1:<free port> and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("proxy address");
        let (state, rx) = watch::channel(State::Up);
        let forwarding = Arc::new(AtomicUsize::new(0));
        runtime.spawn(accept(listener, upstream, rx, Arc::clone(&forwarding)));
        Proxy {
            addr,
            state,
            forwarding,
            runtime: Some(runtime),
        }
    }

    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
        self.wait_until_nothing_forwards();
    }

    pub fn black_hole(&self) {
        self.state.send_replace(State::BlackHole);
        self.wait_until_nothing_forwards();
    }

    /// The connections open when the state changed stop on the proxy's own
    /// runtime; waits for them (a blocking wait, as the proxy never runs on
    /// the caller's runtime).
    fn wait_until_nothing_forwards(&self) {
        let end = Instant::now() + STOP_FORWARDING;
        while self.forwarding.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < end,
                "the proxy still forwards after {STOP_FORWARDING:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Returns at once: the connections keep forwarding one way.
    pub fn lose_replies(&self) {
        self.state.send_replace(State::LoseReplies);
    }

    pub fn restore(&self) {
        self.state.send_replace(State::Up);
    }
}

impl Drop for Proxy {
    /// Without blocking: the proxy may be dropped inside an async test.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    rx: watch::Receiver<State>,
    forwarding: Arc<AtomicUsize>,
) {
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    while let Ok((client, _)) = listener.accept().await {
        let _ = client.set_nodelay(true);
        let counted = Forwarding::count(&forwarding);
        tokio::spawn(serve(client, upstream, rx.clone(), counted));
    }
}

/// One connection in `Proxy::forwarding`, until dropped.
struct Forwarding(Arc<AtomicUsize>);

impl Forwarding {
    fn count(forwarding: &Arc<AtomicUsize>) -> Forwarding {
        forwarding.fetch_add(1, Ordering::SeqCst);
        Forwarding(Arc::clone(forwarding))
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<State>,
    forwarding: Forwarding,
) {
    let now = *state.borrow_and_update();
    match now {
        State::Cut => return, // dropped: closed at once
        State::BlackHole => return swallow(client, state).await,
        State::Up | State::LoseReplies => {}
    }
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream));
    let Ok(Ok(mut server)) = connect.await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let broken = |s: &State| matches!(s, State::Cut | State::BlackHole);
    {
        let (mut from_client, mut to_client) = client.split();
        let (mut from_server, mut to_server) = server.split();
        let replies = forward(&mut from_server, &mut to_client, state.clone(), true);
        tokio::select! {
            _ = forward(&mut from_client, &mut to_server, state.clone(), false) => return,
            _ = replies => return,
            _ = state.wait_for(broken) => {}
        }
    }
    drop(server);
    let now = *state.borrow();
    if now == State::BlackHole {
        drop(forwarding);
        swallow(client, state).await;
    } else {
        // Closed before it stops counting: `cut` returns after this.
        drop(client);
        drop(forwarding);
    }
}

/// Copies `from` to `to` chunk by chunk until either end closes; a chunk
/// of `replies` read while the state is `LoseReplies` is thrown away.
async fn forward(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    state: watch::Receiver<State>,
    replies: bool,
) {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if replies && *state.borrow() == State::LoseReplies {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Reads and discards until the client gives up or the black hole ends;
/// then the connection is closed.
async fn swallow(mut client: TcpStream, mut state: watch::Receiver<State>) {
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            _ = state.wait_for(|s| *s != State::BlackHole) => return,
        }
    }
}
