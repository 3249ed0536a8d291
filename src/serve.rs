//! The local HTTP transport (`cellucid-edge serve`): hyper over tokio (HTTP/1.1 and h2c), every
//! request handed to the shared [`Service`] and its body streamed back; graceful shutdown.
//! Nothing here looks at paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::service::Service;

/// Accept connections on `listener` and answer them with `service` until `shutdown` resolves;
/// then let in-flight requests finish (up to 10 s).
pub async fn serve_until(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(target: "cellucid_edge::serve", "accept failed: {e}");
                        continue;
                    }
                };
                // Small responses (headers, then a streamed body) must not wait for delayed ACKs.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(target: "cellucid_edge::serve", "TCP_NODELAY: {e}");
                }
                let service = service.clone();
                let handler = service_fn(move |request: hyper::Request<Incoming>| {
                    let service = service.clone();
                    async move {
                        // A request body is never read: no route takes one.
                        let (parts, _body) = request.into_parts();
                        let response = service.handle(hyper::Request::from_parts(parts, ())).await;
                        Ok::<_, Infallible>(response)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), handler);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(target: "cellucid_edge::serve", "connection closed: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!(target: "cellucid_edge::serve", "in-flight requests did not finish within 10 s");
        }
    }
    Ok(())
}

/// Bind `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
