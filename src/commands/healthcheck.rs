//! `gatekeeper healthcheck`: exit 0 when the local service answers `/readyz`
//! on GATEKEEPER_ADMIN_LISTEN (the container image's HEALTHCHECK).

use std::time::Duration;

use gatekeeper::config::Config;

use super::{failed, CommandError};

/// `GET /readyz` on the admin listener, bounded in time.
pub async fn run() -> Result<(), CommandError> {
    let config = Config::from_env()?;
    let addr = config.admin_listen;
    match tokio::time::timeout(Duration::from_secs(3), probe(addr)).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(failed("not ready")),
        Ok(Err(e)) => Err(failed(format!("cannot reach {addr}: {e}"))),
        Err(_) => Err(failed(format!("{addr} did not answer within 3 s"))),
    }
}
async fn probe(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}
