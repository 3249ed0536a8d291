//! What travels with a request besides its envelope: hints a transport attaches (as request
//! extensions) and what the gate admitted.

use std::time::{Instant, SystemTime};

/// Set by a transport: the instant by which the answer must be out (the Lambda: the
/// invocation's own deadline minus a margin). The service uses the earlier of this and its
/// configured request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// Set by a transport that buffers bodies (the Lambda): the largest body it carries inline.
/// Store objects larger than this are not read; their response carries only a deliverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub u64);

/// What a verified share token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The one dataset (catalogue id) it opens; `None`: every dataset.
    pub dataset: Option<String>,
    /// When it stops being valid: no presigned URL outlives it.
    pub expires: SystemTime,
}

/// What the gate admitted: attached to the request handed to the router and the handlers.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The share token's grant (`None`: a public server).
    pub grant: Option<Grant>,
    /// The request's deadline.
    pub deadline: Instant,
    /// The transport's body limit, if it has one.
    pub body_limit: Option<u64>,
}

impl Admission {
    /// The dataset a share token is bound to, if any.
    pub fn bound_dataset(&self) -> Option<&str> {
        self.grant.as_ref().and_then(|g| g.dataset.as_deref())
    }
}
