//! A loopback HTTP server whose answers follow a script the test changes as it goes: each
//! request takes the next letter of the pattern (`.` answers 200, `F` answers 500), cycling. It
//! can be killed whole (its port refuses connections) and started again on the same port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct Script {
    pattern: Vec<u8>,
    next: usize,
}

pub struct Scripted {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    hits: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Scripted {
    pub async fn spawn(pattern: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = Self {
            port: listener.local_addr().unwrap().port(),
            script: Arc::default(),
            hits: Arc::default(),
            task: None,
        };
        server.set(pattern);
        server.serve(listener);
        server
    }

    /// From the next request on, answers follow `pattern` from its start.
    pub fn set(&self, pattern: &str) {
        assert!(!pattern.is_empty() && pattern.bytes().all(|b| b == b'.' || b == b'F'));
        *self.script.lock().unwrap() = Script {
            pattern: pattern.as_bytes().to_vec(),
            next: 0,
        };
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The base URL, for `service_registry.base_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening: connections to the port are refused until [`Scripted::restart`].
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again (retrying while the port is still being released).
    pub async fn restart(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.port);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (script, hits) = (self.script.clone(), self.hits.clone());
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (script, hits) = (script.clone(), hits.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let ok = {
                        let mut s = script.lock().unwrap();
                        let letter = s.pattern[s.next % s.pattern.len()];
                        s.next += 1;
                        letter == b'.'
                    };
                    hits.fetch_add(1, Ordering::SeqCst);
                    let status = if ok {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        }));
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
