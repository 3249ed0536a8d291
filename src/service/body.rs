//! The one response body type of the service: bytes, a length-checked stream, or a body a
//! buffered transport could not take, each optionally with a [`Deliverable`] — the same bytes
//! as an object a transport can hand out by redirect (a presigned URL) instead of inline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use hyper::body::{Frame, SizeHint};
use object_store::path::Path;
use object_store::signer::Signer;

use crate::cache::{ArtifactCache, CacheError};

/// Bytes from object storage, as a stream.
pub type ByteStream = BoxStream<'static, Result<Bytes, object_store::Error>>;

/// Why a body could not be delivered whole (the transport must then not answer with a short
/// body: hyper closes the connection, the Lambda answers 503).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The store failed while the body was being read.
    #[error("the store failed while the body was read")]
    Store(#[source] object_store::Error),
    /// The stream ended before the announced length.
    #[error("the body ended after {got} of its {expected} bytes")]
    Short {
        /// Announced length.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The stream went on past the announced length.
    #[error("the body ran past its announced {expected} bytes")]
    Long {
        /// Announced length.
        expected: u64,
    },
    /// No bytes arrived for this long (a store that stopped answering mid-body).
    #[error("no body bytes for {0:?}")]
    Stalled(Duration),
    /// The body was withheld (larger than the transport's limit) and cannot be sent inline.
    #[error("a body of {0} bytes was withheld as too large for this transport")]
    Withheld(u64),
}

enum Content {
    Empty,
    Bytes(Bytes),
    Stream(Checked),
    Withheld(u64),
}

/// A response body (see the module documentation).
pub struct Body {
    content: Content,
    deliverable: Option<Deliverable>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let content = match &self.content {
            Content::Empty => "empty".to_string(),
            Content::Bytes(b) => format!("{} bytes", b.len()),
            Content::Stream(s) => format!("stream of {} bytes", s.expected),
            Content::Withheld(n) => format!("{n} bytes withheld"),
        };
        f.debug_struct("Body")
            .field("content", &content)
            .field("deliverable", &self.deliverable)
            .finish()
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body::bytes(bytes)
    }
}

impl Body {
    /// No body (HEAD, 204, 304, redirects).
    pub fn empty() -> Self {
        Body {
            content: Content::Empty,
            deliverable: None,
        }
    }

    /// A body in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Body {
            content: if bytes.is_empty() {
                Content::Empty
            } else {
                Content::Bytes(bytes)
            },
            deliverable: None,
        }
    }

    /// A stream that must yield exactly `len` bytes: a short or long stream is an error, never
    /// a short answer.
    pub fn stream(stream: ByteStream, len: u64) -> Self {
        Body {
            content: Content::Stream(Checked::new(stream, len)),
            deliverable: None,
        }
    }

    /// A body of `len` bytes that was not read because the transport said it cannot carry it
    /// inline ([`BodyLimit`](super::BodyLimit)); only its deliverable, if any, can.
    pub fn withheld(len: u64) -> Self {
        Body {
            content: Content::Withheld(len),
            deliverable: None,
        }
    }

    /// The same bytes as an object a transport may redirect to.
    pub fn with_deliverable(mut self, deliverable: Option<Deliverable>) -> Self {
        self.deliverable = deliverable;
        self
    }

    /// End a stream that stays silent for `idle` (a store that stops answering mid-body).
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        if let Content::Stream(stream) = &mut self.content {
            stream.idle = Some(idle);
        }
        self
    }

    /// Exact length of the content in bytes.
    pub fn len(&self) -> u64 {
        match &self.content {
            Content::Empty => 0,
            Content::Bytes(b) => b.len() as u64,
            Content::Stream(s) => s.expected,
            Content::Withheld(n) => *n,
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content when it is in memory.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.content {
            Content::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Whether the content was withheld (see [`Body::withheld`]).
    pub fn is_withheld(&self) -> bool {
        matches!(self.content, Content::Withheld(_))
    }

    /// The deliverable, if any.
    pub fn deliverable(&self) -> Option<&Deliverable> {
        self.deliverable.as_ref()
    }

    /// The deliverable, to limit it (e.g. to a share token's expiry).
    pub fn deliverable_mut(&mut self) -> Option<&mut Deliverable> {
        self.deliverable.as_mut()
    }

    /// Drop the content (a HEAD response keeps its headers only), and the deliverable with it.
    pub fn strip(&mut self) {
        self.content = Content::Empty;
        self.deliverable = None;
    }

    /// The whole content in memory (a transport that cannot stream). A stream that fails, ends
    /// short or runs long, and a withheld body, are errors.
    pub async fn collect(self) -> Result<Bytes, BodyError> {
        match self.content {
            Content::Empty => Ok(Bytes::new()),
            Content::Bytes(b) => Ok(b),
            Content::Withheld(n) => Err(BodyError::Withheld(n)),
            Content::Stream(mut stream) => {
                let mut out = BytesMut::with_capacity(stream.expected.min(64 << 20) as usize);
                while let Some(chunk) = stream.next().await {
                    out.extend_from_slice(&chunk?);
                }
                Ok(out.freeze())
            }
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.content {
            Content::Empty => Poll::Ready(None),
            Content::Bytes(_) => match std::mem::replace(&mut self.content, Content::Empty) {
                Content::Bytes(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                _ => Poll::Ready(None),
            },
            Content::Stream(stream) => stream
                .poll_next_unpin(cx)
                .map(|item| item.map(|chunk| chunk.map(Frame::data))),
            Content::Withheld(n) => {
                let n = *n;
                self.content = Content::Empty;
                Poll::Ready(Some(Err(BodyError::Withheld(n))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.content, Content::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Stream(s) => SizeHint::with_exact(s.expected.saturating_sub(s.seen)),
            _ => SizeHint::with_exact(self.len()),
        }
    }
}

/// A stream checked against its announced length, optionally ended when idle too long.
struct Checked {
    inner: ByteStream,
    expected: u64,
    seen: u64,
    idle: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl Checked {
    fn new(inner: ByteStream, expected: u64) -> Self {
        Checked {
            inner,
            expected,
            seen: 0,
            idle: None,
            timer: None,
            done: false,
        }
    }
}

impl Stream for Checked {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected {
                    self.done = true;
                    return Poll::Ready(Some(Err(BodyError::Long {
                        expected: self.expected,
                    })));
                }
                if let (Some(idle), Some(timer)) = (self.idle, self.timer.as_mut()) {
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(BodyError::Store(e))))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.seen < self.expected {
                    Poll::Ready(Some(Err(BodyError::Short {
                        expected: self.expected,
                        got: self.seen,
                    })))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => {
                let Some(idle) = self.idle else {
                    return Poll::Pending;
                };
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.done = true;
                    return Poll::Ready(Some(Err(BodyError::Stalled(idle))));
                }
                Poll::Pending
            }
        }
    }
}

/// Why a deliverable could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// Staging the artifact in the cache prefix failed.
    #[error("the artifact could not be staged in the cache prefix")]
    Cache(#[from] CacheError),
    /// The backend refused to sign a URL.
    #[error("the store could not presign `{path}`")]
    Sign {
        /// Object path.
        path: String,
        /// Cause, when the backend gave one.
        #[source]
        source: Option<object_store::Error>,
    },
    /// The share token the request came with expires before a URL could be used.
    #[error("the share token expires too soon for a presigned URL")]
    Expired,
}

enum Target {
    /// A rendered artifact in the cache prefix, written there (create-only) when missing.
    CacheArtifact {
        cache: ArtifactCache,
        fingerprint: String,
        key: String,
        gzipped: Bytes,
        content_type: &'static str,
        content_encoding: Option<&'static str>,
    },
    /// An object of a store that can presign (S3).
    StoreObject {
        signer: Arc<dyn Signer>,
        path: Path,
        query: Vec<(&'static str, &'static str)>,
    },
}

/// The bytes of a body as an object a transport may redirect to, when it cannot carry them.
pub struct Deliverable {
    target: Target,
    not_after: Option<SystemTime>,
}

impl std::fmt::Debug for Deliverable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.target {
            Target::CacheArtifact {
                fingerprint, key, ..
            } => format!("cache {fingerprint}/{key}"),
            Target::StoreObject { path, .. } => format!("object {path}"),
        };
        f.debug_struct("Deliverable")
            .field("target", &what)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl Deliverable {
    /// A rendered artifact: `gzipped` stored under `<fingerprint>/<key>` of `cache` with the
    /// `Content-Type`/`Content-Encoding` a client fetching it directly must see. `None` when
    /// the cache backend cannot presign.
    pub fn cache_artifact(
        cache: &ArtifactCache,
        fingerprint: &str,
        key: String,
        gzipped: Bytes,
        content_type: &'static str,
        content_encoding: Option<&'static str>,
    ) -> Option<Self> {
        cache.can_presign().then(|| Deliverable {
            target: Target::CacheArtifact {
                cache: cache.clone(),
                fingerprint: fingerprint.to_string(),
                key,
                gzipped,
                content_type,
                content_encoding,
            },
            not_after: None,
        })
    }

    /// A store object served as stored bytes (`application/octet-stream`, `no-cache`).
    pub fn store_object(signer: Arc<dyn Signer>, path: Path) -> Self {
        Deliverable {
            target: Target::StoreObject {
                signer,
                path,
                query: vec![
                    ("response-content-type", "application/octet-stream"),
                    ("response-cache-control", "no-cache"),
                ],
            },
            not_after: None,
        }
    }

    /// Never hand out a URL valid past `not_after` (a share token's expiry).
    pub fn limit_to(&mut self, not_after: SystemTime) {
        self.not_after = Some(self.not_after.map_or(not_after, |t| t.min(not_after)));
    }

    /// The lifetime of a URL made at `now`: at most `max`, never past the limit; `None` when
    /// less than a second is left.
    pub fn lifetime(&self, max: Duration, now: SystemTime) -> Option<Duration> {
        let left = match self.not_after {
            Some(t) => t.duration_since(now).ok()?,
            None => max,
        };
        let secs = max.min(left).as_secs();
        (secs >= 1).then(|| Duration::from_secs(secs))
    }

    /// A presigned GET URL of the bytes, valid for at most `max` (see [`Self::lifetime`]).
    pub async fn presign(&self, max: Duration) -> Result<String, DeliverError> {
        let ttl = self
            .lifetime(max, SystemTime::now())
            .ok_or(DeliverError::Expired)?;
        match &self.target {
            Target::CacheArtifact {
                cache,
                fingerprint,
                key,
                gzipped,
                content_type,
                content_encoding,
            } => {
                if !cache.exists(fingerprint, key).await? {
                    cache
                        .put_encoded(
                            fingerprint,
                            key,
                            gzipped.clone(),
                            content_type,
                            *content_encoding,
                        )
                        .await?;
                }
                cache
                    .presigned_get(fingerprint, key, ttl)
                    .await
                    .ok_or_else(|| DeliverError::Sign {
                        path: cache.path(fingerprint, key).to_string(),
                        source: None,
                    })
            }
            Target::StoreObject {
                signer,
                path,
                query,
            } => {
                let options =
                    object_store::signer::SignedUrlOptions::new().with_query(query.iter().copied());
                signer
                    .signed_url_opts(http::Method::GET, path, ttl, &options)
                    .await
                    .map(|url| url.to_string())
                    .map_err(|source| DeliverError::Sign {
                        path: path.to_string(),
                        source: Some(source),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn streams_are_checked_against_their_length() {
        let whole = Body::stream(chunks(&[b"ab", b"cd"]), 4).collect().await;
        assert_eq!(&whole.expect("whole")[..], b"abcd");
        let short = Body::stream(chunks(&[b"ab"]), 4).collect().await;
        assert!(matches!(
            short,
            Err(BodyError::Short {
                expected: 4,
                got: 2
            })
        ));
        let long = Body::stream(chunks(&[b"abc", b"de"]), 4).collect().await;
        assert!(matches!(long, Err(BodyError::Long { expected: 4 })));
        assert!(Body::withheld(9).collect().await.is_err());
        assert_eq!(Body::withheld(9).len(), 9);
    }

    #[tokio::test]
    async fn a_silent_stream_ends_with_an_error() {
        let hung: ByteStream = futures::stream::pending().boxed();
        let body = Body::stream(hung, 10).with_idle_timeout(Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert!(matches!(body.collect().await, Err(BodyError::Stalled(_))));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn lifetimes_never_pass_the_limit() {
        let signer: Arc<dyn Signer> = Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name("b")
                .with_region("us-east-1")
                .with_access_key_id("k")
                .with_secret_access_key("s")
                .build()
                .expect("s3 client"),
        );
        let mut d = Deliverable::store_object(signer, Path::from("x"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let max = Duration::from_secs(300);
        assert_eq!(d.lifetime(max, now), Some(max));
        d.limit_to(now + Duration::from_secs(90));
        assert_eq!(d.lifetime(max, now), Some(Duration::from_secs(90)));
        d.limit_to(now + Duration::from_secs(500));
        assert_eq!(d.lifetime(max, now), Some(Duration::from_secs(90)));
        assert_eq!(d.lifetime(max, now + Duration::from_secs(90)), None);
    }
}
