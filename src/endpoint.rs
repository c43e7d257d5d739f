//! The Prometheus scrape endpoint: `GET /metrics` over HTTP/1.x on a loopback address by
//! default.
//!
//! A scrape is one small request and one response, so this is a deliberately minimal
//! HTTP responder (RFC 9112: request line, headers up to the blank line, one response,
//! connection closed) rather than a web framework: fewer dependencies on a box that sits
//! on a tap. Requests are bounded in size and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// Largest request head accepted.
const MAX_REQUEST_BYTES: usize = 8192;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, metrics.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Metrics endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request and writes its response.
async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return,
    };
    let response = respond(&head, &metrics);
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the end of the request head (a blank line).
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

/// The response to a request head.
pub fn respond(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => {
            let body = metrics.render();
            let body = if method == b"HEAD" {
                String::new()
            } else {
                body
            };
            response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
        }
        (b"GET" | b"HEAD", _) => response("404 Not Found", "text/plain", "Try /metrics\n"),
        _ => response("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

/// A complete HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_path_answers_with_the_exposition() {
        let m = Metrics::new();
        let r =
            String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("c2watch_build_info"));
        let r = String::from_utf8(respond(b"GET / HTTP/1.1\r\n\r\n", &m)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404"));
        let r = String::from_utf8(respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m)).unwrap();
        assert!(r.starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn serves_over_tcp_on_loopback() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new())));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        assert!(text.contains("c2watch_packets_total") || text.contains("c2watch_build_info"));
        server.abort();
    }
}
