//! A TCP proxy in front of PostgreSQL that a test can cut, black-hole and restore: a database
//! outage for one daemon, without stopping the server the other tests share. Cut, connections
//! close and new ones are refused; black-holed, bytes are taken and nothing comes back (a stopped
//! server, or a network that drops packets) until it is restored, when they flow again.

use std::net::SocketAddr;

use mcp_healthd::config::DatabaseUrl;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestDb, server_url};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Up,
    Cut,
    BlackHole,
}

pub struct Proxy {
    pub port: u16,
    state: watch::Sender<State>,
    task: tokio::task::JoinHandle<()>,
}

/// Waits while the proxy is black-holed; `false` if it is cut.
async fn passable(state: &mut watch::Receiver<State>) -> bool {
    match state.wait_for(|s| *s != State::BlackHole).await {
        Ok(s) => *s == State::Up,
        Err(_) => false,
    }
}

/// Copies `from` to `to` while the proxy lets it.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut state: watch::Receiver<State>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = state.wait_for(|s| *s == State::Cut) => return,
        };
        if !passable(&mut state).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    if !passable(&mut state).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    tokio::select! {
        () = pump(client_rx, server_tx, state.clone()) => {}
        () = pump(server_rx, client_tx, state.clone()) => {}
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, watcher) = watch::channel(State::Up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *watcher.borrow() == State::Cut {
                    continue; // dropped: the client sees its connection closed at once
                }
                tokio::spawn(relay(client, upstream, watcher.clone()));
            }
        });
        Self { port, state, task }
    }

    /// A proxy in front of the PostgreSQL server the tests use.
    pub async fn to_test_server() -> Self {
        use std::net::ToSocketAddrs;
        let server = url::Url::parse(server_url().expose()).unwrap();
        let upstream = (server.host_str().unwrap(), server.port().unwrap_or(5432))
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        Self::start(upstream).await
    }

    /// `db`'s URL, through this proxy.
    pub fn url_for(&self, db: &TestDb) -> DatabaseUrl {
        let mut url = url::Url::parse(db.url.expose()).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        DatabaseUrl::parse(url.as_str()).unwrap()
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    /// Takes everything and answers nothing, on open connections and new ones alike.
    pub fn black_hole(&self) {
        self.state.send_replace(State::BlackHole);
    }

    /// Lets traffic through again (what a black hole held flows on).
    pub fn restore(&self) {
        self.state.send_replace(State::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
