//! Runs dynoxide's DynamoDB HTTP API on a loopback port inside this process.

use std::net::SocketAddr;
use tokio::sync::oneshot;

/// A running local DynamoDB server; stops when dropped.
pub struct LocalDynamoDb {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

/// The emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}; pick another port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open dynoxide's in-memory database: {0}")]
    Database(String),
}

impl LocalDynamoDb {
    /// Starts a fresh, empty in-memory server on 127.0.0.1:`port` (0 picks a free port).
    /// Must be called inside a Tokio runtime, which then serves it.
    pub async fn start(port: u16) -> Result<Self, EmulatorError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let db =
            dynoxide::Database::memory().map_err(|e| EmulatorError::Database(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(dynoxide::server::serve_with_shutdown(
            listener,
            db,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(LocalDynamoDb {
            addr,
            stop: Some(stop),
        })
    }

    /// The endpoint URL to give the SDK (`AWS_ENDPOINT_URL_DYNAMODB`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalDynamoDb {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
