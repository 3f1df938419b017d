//! A loopback HTTP server that records the head of every request it receives, for tests that
//! must see what the prober sent (headers, credentials) and where.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback HTTP server that keeps the head of every request and answers it with the status
/// and extra header lines `answer(path, head)` gives.
pub struct Recorder {
    pub port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`Recorder`] answers: `(path, head) -> (status, extra header lines)`.
type Answer = dyn Fn(&str, &str) -> (u16, String) + Send + Sync;

impl Recorder {
    pub async fn spawn(
        answer: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let kept = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, answer) = (kept.clone(), answer.clone());
                tokio::spawn(async move { serve(stream, &*answer, &kept).await });
            }
        });
        Self { port, heads, task }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The heads of the requests for `path`.
    pub fn heads_for(&self, path: &str) -> Vec<String> {
        let line = format!(" {path} HTTP/1.1");
        self.heads()
            .into_iter()
            .filter(|h| h.lines().next().is_some_and(|l| l.contains(&line)))
            .collect()
    }
}

/// The value of header `name` in a request head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one request head, keeps it, and answers.
async fn serve(mut stream: TcpStream, answer: &Answer, kept: &Mutex<Vec<String>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, extra) = answer(&path, &head);
    kept.lock().unwrap().push(head);
    let reply =
        format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n{extra}\r\nok");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
