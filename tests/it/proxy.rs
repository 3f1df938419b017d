//! A TCP proxy in front of PostgreSQL that a test can cut and restore: a database outage for
//! one daemon, without stopping the server the other tests share.

use std::net::SocketAddr;

use mcp_healthd::config::DatabaseUrl;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestDb, server_url};

pub struct Proxy {
    pub port: u16,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watcher) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*watcher.borrow() {
                    continue; // dropped: the client sees its connection closed at once
                }
                let mut down = watcher.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up, task }
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
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
