//! `gatekeeper healthcheck`: exit 0 when the local service answers `/readyz`
//! on GATEKEEPER_ADMIN_LISTEN (for container health checks, which have no
//! curl).

use std::process::ExitCode;
use std::time::Duration;

use gatekeeper::config::Config;

use super::{fail, EXIT_CONFIG};

/// `GET /readyz` on the admin listener, bounded in time.
pub async fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    match tokio::time::timeout(Duration::from_secs(3), probe(config.admin_listen)).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => fail(1, "not ready"),
        Ok(Err(e)) => fail(1, format!("cannot reach {}: {e}", config.admin_listen)),
        Err(_) => fail(
            1,
            format!("{} did not answer within 3 s", config.admin_listen),
        ),
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
