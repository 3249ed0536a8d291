//! [`FaultyStore`]: an [`ObjectStore`] wrapper that injects failures — errors, latency, hangs,
//! silently truncated bodies and bodies interrupted mid-stream — on chosen keys, with a
//! probability, or for the next N calls. Used by the fault-injection tests, the fuzz targets
//! and benchmarks to show that a misbehaving store gives a clear 503 with a retry hint, never
//! a hung request or a poisoned cache entry.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// What goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with a (transient) store error.
    Error,
    /// The call succeeds after this delay.
    Latency(Duration),
    /// The call never completes (the caller's deadline must end it).
    Hang,
    /// A read returns only the first half of its bytes while claiming the full range (a body
    /// cut short without an error). Other calls are unaffected.
    Truncate,
    /// A read's body stream yields the first half of its bytes, then an error (connection
    /// reset mid-body). Other calls are unaffected.
    Interrupt,
    /// The call fails with `PermissionDenied` (the server's credentials may not read the
    /// store: permanent until someone fixes them).
    Denied,
    /// The call fails with `NotFound` (the object vanished).
    Missing,
}

/// Which object keys a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// Every key (and listings).
    Any,
    /// Keys containing this text.
    Contains(String),
    /// Keys ending with this text.
    Suffix(String),
}

impl KeyMatch {
    fn matches(&self, key: &str) -> bool {
        match self {
            KeyMatch::Any => true,
            KeyMatch::Contains(s) => key.contains(s.as_str()),
            KeyMatch::Suffix(s) => key.ends_with(s.as_str()),
        }
    }
}

/// One injection rule: `fault` on calls whose key matches, each with `probability`, for at
/// most `remaining` calls (`None`: until cleared).
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// The fault.
    pub fault: Fault,
    /// Keys it applies to.
    pub keys: KeyMatch,
    /// Chance per matching call, in [0, 1].
    pub probability: f64,
    /// Calls left to fault (`None`: unlimited).
    pub remaining: Option<u64>,
    /// Whether writes (put, multipart) are faulted too (only `Error`, `Latency`, `Hang`).
    pub writes: bool,
}

impl FaultRule {
    /// `fault` on every read of every key, until cleared.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            keys: KeyMatch::Any,
            probability: 1.0,
            remaining: None,
            writes: false,
        }
    }

    /// Only on keys matching `keys`.
    pub fn on(mut self, keys: KeyMatch) -> Self {
        self.keys = keys;
        self
    }

    /// Each matching call is faulted with probability `p`.
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Only the next `n` matching calls.
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Writes are faulted too.
    pub fn including_writes(mut self) -> Self {
        self.writes = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Body,
    Write,
}

/// An [`ObjectStore`] that injects [`Fault`]s into calls to the store it wraps.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<FaultRule>>,
    rng: Mutex<fastrand::Rng>,
    injected: AtomicU64,
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl FaultyStore {
    /// Wrap `inner` with no faults yet (a fixed seed, so probabilistic runs repeat).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_seed(inner, 0x5eed)
    }

    /// Wrap `inner`, drawing probabilities from a generator seeded with `seed`.
    pub fn with_seed(inner: Arc<dyn ObjectStore>, seed: u64) -> Self {
        FaultyStore {
            inner,
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            injected: AtomicU64::new(0),
        }
    }

    /// Add a rule (rules are tried in the order added; the first that fires wins).
    pub fn inject(&self, rule: FaultRule) {
        self.rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule);
    }

    /// Remove every rule: the store behaves like the one it wraps again.
    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// The fault for a call on `key` (counting it), if a rule fires.
    fn draw(&self, key: &str, op: Op) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        for rule in rules.iter_mut() {
            let applies = match op {
                Op::Read => !matches!(rule.fault, Fault::Truncate | Fault::Interrupt),
                Op::Body => true,
                Op::Write => {
                    rule.writes && !matches!(rule.fault, Fault::Truncate | Fault::Interrupt)
                }
            };
            if !applies || rule.remaining == Some(0) || !rule.keys.matches(key) {
                continue;
            }
            if rule.probability < 1.0 && rng.f64() >= rule.probability {
                continue;
            }
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Some(rule.fault.clone());
        }
        None
    }

    /// Apply the call-level part of `fault` (error, delay, hang).
    async fn before(fault: Option<&Fault>, key: &str) -> Result<()> {
        match fault {
            Some(Fault::Error) => Err(injected(key, "store error")),
            Some(Fault::Denied) => Err(object_store::Error::PermissionDenied {
                path: key.to_string(),
                source: "injected fault: access denied".into(),
            }),
            Some(Fault::Missing) => Err(object_store::Error::NotFound {
                path: key.to_string(),
                source: "injected fault: no such object".into(),
            }),
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Some(Fault::Hang) => futures::future::pending().await,
            _ => Ok(()),
        }
    }
}

fn injected(key: &str, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {what} at `{key}`").into(),
    }
}

/// `result` with its body cut to half; with `error`, the stream then fails instead of ending.
async fn damage(result: GetResult, key: &str, error: bool) -> Result<GetResult> {
    let meta = result.meta.clone();
    let range = result.range.clone();
    let attributes = result.attributes.clone();
    let bytes = result.bytes().await?;
    let half = bytes.slice(..bytes.len() / 2);
    let mut items: Vec<Result<Bytes>> = vec![Ok(half)];
    if error {
        items.push(Err(injected(key, "connection reset mid-body")));
    }
    Ok(GetResult {
        payload: GetResultPayload::Stream(futures::stream::iter(items).boxed()),
        meta,
        range,
        attributes,
        extensions: Default::default(),
    })
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let key = location.as_ref();
        Self::before(self.draw(key, Op::Write).as_ref(), key).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let key = location.as_ref();
        Self::before(self.draw(key, Op::Write).as_ref(), key).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let key = location.as_ref();
        let head = options.head;
        let fault = self.draw(key, if head { Op::Read } else { Op::Body });
        Self::before(fault.as_ref(), key).await?;
        let result = self.inner.get_opts(location, options).await?;
        match fault {
            Some(Fault::Truncate) => damage(result, key, false).await,
            Some(Fault::Interrupt) => damage(result, key, true).await,
            _ => Ok(result),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let key = location.as_ref();
        let fault = self.draw(key, Op::Body);
        Self::before(fault.as_ref(), key).await?;
        let mut parts = self.inner.get_ranges(location, ranges).await?;
        match fault {
            Some(Fault::Truncate) => {
                if let Some(last) = parts.last_mut() {
                    *last = last.slice(..last.len() / 2);
                }
                Ok(parts)
            }
            Some(Fault::Interrupt) => Err(injected(key, "connection reset mid-body")),
            _ => Ok(parts),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        match self.draw(&key, Op::Read) {
            Some(fault @ (Fault::Error | Fault::Denied | Fault::Missing)) => {
                futures::stream::once(async move {
                    Self::before(Some(&fault), &key).await?;
                    Err(injected(&key, "list error"))
                })
                .boxed()
            }
            Some(Fault::Hang) => futures::stream::pending().boxed(),
            Some(Fault::Latency(d)) => {
                let inner = self.inner.list(prefix);
                futures::stream::once(tokio::time::sleep(d))
                    .flat_map(move |()| futures::stream::empty())
                    .chain(inner)
                    .boxed()
            }
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map(|p| p.as_ref().to_string()).unwrap_or_default();
        Self::before(self.draw(&key, Op::Read).as_ref(), &key).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    async fn store() -> FaultyStore {
        let inner = Arc::new(InMemory::new());
        inner
            .put(&Path::from("a/x"), PutPayload::from_static(b"0123456789"))
            .await
            .unwrap();
        FaultyStore::new(inner)
    }

    #[tokio::test]
    async fn rules_fire_as_configured() {
        let s = store().await;
        let x = Path::from("a/x");
        assert_eq!(s.get(&x).await.unwrap().bytes().await.unwrap().len(), 10);
        s.inject(FaultRule::always(Fault::Error).times(2));
        assert!(s.get(&x).await.is_err());
        assert!(s.get(&x).await.is_err());
        assert!(s.get(&x).await.is_ok(), "only the next 2 calls");
        s.inject(FaultRule::always(Fault::Truncate).on(KeyMatch::Suffix("/x".into())));
        let r = s.get(&x).await.unwrap();
        assert_eq!(r.range, 0..10, "claims the full range");
        assert_eq!(r.bytes().await.unwrap().len(), 5);
        s.clear();
        s.inject(FaultRule::always(Fault::Interrupt));
        assert!(s.get(&x).await.unwrap().bytes().await.is_err());
        s.clear();
        s.inject(FaultRule::always(Fault::Hang));
        let hung = tokio::time::timeout(Duration::from_millis(50), s.get(&x)).await;
        assert!(hung.is_err(), "a hang never completes");
        s.clear();
        s.inject(FaultRule::always(Fault::Error).with_probability(0.5));
        let mut failed = 0;
        for _ in 0..200 {
            failed += usize::from(s.get(&x).await.is_err());
        }
        assert!((60..140).contains(&failed), "{failed} of 200");
        assert_eq!(s.injected(), 2 + 1 + 1 + 1 + failed as u64);
    }
}
