//! A fleet of real HTTP servers on loopback, one per behaviour, each counting the requests it
//! received: the tests' and benchmarks' targets (benches include this file). Raw TCP, so the
//! misbehaving ones can misbehave exactly (hang, reset, trickle, lie). The demo has its own,
//! smaller fleet in the library (`demo::services`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Healthy,
    Status(u16),
    Slow(Duration),
    /// Reads the request, then never answers.
    Hang,
    /// Reads the request, then resets the connection.
    Reset,
    /// Sends bytes that are neither HTTP nor TLS as soon as a client connects.
    NotHttp,
    RedirectLoop,
    /// Redirects to a healthy page on the same server.
    RedirectToHealthy,
    /// A 64 MiB body, streamed.
    HugeBody,
    /// The status line and headers, one byte at a time.
    Trickle,
    /// Every fourth request fails.
    FailOneInFour,
    /// The first `n` requests fail, then it is healthy.
    FailFirst(usize),
}

pub struct Server {
    pub port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `behaviour` on a free loopback port.
pub async fn spawn(behaviour: Behaviour) -> Server {
    try_spawn(behaviour).await.expect("bind a loopback port")
}

pub async fn try_spawn(behaviour: Behaviour) -> std::io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let _ = serve(stream, behaviour, counter).await;
            });
        }
    });
    Ok(Server { port, hits, task })
}

/// A port on which nothing listens, held for as long as this lives: bound but not listening,
/// so a connection is refused, and no server of a test running alongside can take the port.
pub struct ClosedPort {
    pub port: u16,
    _held: tokio::net::TcpSocket,
}

pub async fn closed_port() -> std::io::Result<ClosedPort> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse().expect("literal"))?;
    let port = socket.local_addr()?.port();
    Ok(ClosedPort {
        port,
        _held: socket,
    })
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    hits: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    if let Behaviour::NotHttp = behaviour {
        // Like an SSH server: a banner at once, whatever the client says (HTTP or a TLS hello).
        hits.fetch_add(1, Ordering::SeqCst);
        stream
            .write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01garbage\r\n\r\n")
            .await?;
        return stream.shutdown().await;
    }
    let head = read_head(&mut stream).await?;
    let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    match behaviour {
        Behaviour::Healthy => respond(&mut stream, 200, "", "{\"status\":\"ok\"}").await,
        Behaviour::Status(code) => respond(&mut stream, code, "", "").await,
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            respond(&mut stream, 200, "", "late").await
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        Behaviour::Reset => {
            stream.set_zero_linger()?;
            drop(stream);
            Ok(())
        }
        Behaviour::NotHttp => Ok(()), // answered above, before reading
        Behaviour::RedirectLoop => {
            respond(&mut stream, 302, &format!("Location: {path}\r\n"), "").await
        }
        Behaviour::RedirectToHealthy if path == "/ok" => respond(&mut stream, 200, "", "ok").await,
        Behaviour::RedirectToHealthy => respond(&mut stream, 302, "Location: /ok\r\n", "").await,
        Behaviour::HugeBody => {
            let size = 64usize << 20;
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..size / chunk.len() {
                stream.write_all(&chunk).await?;
            }
            stream.shutdown().await
        }
        Behaviour::Trickle => {
            for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nok" {
                stream.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        }
        Behaviour::FailOneInFour if n.is_multiple_of(4) => respond(&mut stream, 503, "", "").await,
        Behaviour::FailOneInFour => respond(&mut stream, 200, "", "ok").await,
        Behaviour::FailFirst(k) if n <= k => respond(&mut stream, 500, "", "").await,
        Behaviour::FailFirst(_) => respond(&mut stream, 200, "", "ok").await,
    }
}
