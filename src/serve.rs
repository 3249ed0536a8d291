//! The local HTTP server (`cellucid-edge serve`): hyper over tokio, every request answered
//! concurrently by the shared [`App`], graceful shutdown on Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::http::App;

/// Accept connections on `listener` and answer them with `app` until `shutdown` resolves; then
/// let in-flight requests finish (up to 10 s).
pub async fn serve_until(
    listener: TcpListener,
    app: Arc<App>,
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
                let app = app.clone();
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let app = app.clone();
                    async move {
                        let (parts, _body) = request.into_parts();
                        let request = hyper::Request::from_parts(parts, ());
                        // 0.9 store bytes stream from object storage (never buffered whole).
                        if let Some(v09) = app.protocol_09()
                            && crate::v09::is_v09_path(request.uri().path())
                        {
                            let response = v09.handle(&request).await;
                            return Ok::<_, Infallible>(response.map(crate::v09::hyper_body));
                        }
                        let response = app.handle(&request).await;
                        Ok::<_, Infallible>(response.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync()))
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
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

/// Body type used by the server: buffered artifacts, or 0.9 store bytes streamed from storage.
pub type Body = UnsyncBoxBody<Bytes, crate::v09::BodyError>;
