//! What passes between the adapter and a stream's lifecycle: host events in, a reply and host
//! actions out, and what a step may use.

use super::{BodyBudget, Headers, Record};
use crate::databricks::exchange::{TokenRequest, UpstreamTokens};
use crate::engine::{Engine, HeaderRewrite};
use crate::error::{AuthError, DenyResponse};
use crate::identity::Principal;
use crate::jwks::{JwksStore, UnixMillis};
use crate::shared_data::SharedData;

/// What a step may use: the compiled policy, the key store, the caches, shared data and the
/// host's clock.
pub struct Env<'a> {
    pub engine: &'a Engine,
    pub store: &'a mut JwksStore,
    pub cache: &'a mut crate::cache::TokenCache,
    pub upstream_tokens: &'a mut UpstreamTokens,
    pub shared: &'a dyn SharedData,
    pub now_ms: UnixMillis,
    /// Fill the audit record's token fingerprint (only worth it when records are kept).
    pub fingerprint: bool,
    /// The bodies this VM's streams hold ([`body_budget`]).
    pub body_budget: &'a BodyBudget,
}

/// A host event for one stream.
#[derive(Debug)]
pub enum Event<'a> {
    RequestHeaders {
        headers: Headers,
        end_of_stream: bool,
    },
    /// Body bytes that arrived since the last body event. The adapter reads them from the host
    /// only while [`Stream::wants_body_bytes`] is true (otherwise `bytes` is empty: the host
    /// keeps buffering what a held stream does not read).
    RequestBody {
        bytes: &'a [u8],
        end_of_stream: bool,
    },
    /// The request's trailers (their arrival ends the request).
    RequestTrailers { trailers: Headers },
    /// The request headers, one of which is not UTF-8 text (`header_map::MapError::NotUtf8`):
    /// `name` is that header's (printable) name, `headers` the map read lossily, for the audit
    /// record only.
    UnreadableHeaders { name: String, headers: Headers },
    /// The request's trailers, one of which (`name`) is not UTF-8 text.
    UnreadableTrailers { name: String },
    /// From the root context: keys changed, a fetch attempt ended, or time passed.
    Wake,
    /// The Databricks token this stream waited for, or why there is none.
    UpstreamToken(Result<String, AuthError>),
    /// A host call that carries out the actions of this stream's last step failed (for example
    /// replacing its headers): whatever the verdict was, the request must not go on. The
    /// adapter sends it right after that step, never later.
    HostFailure(String),
    /// The host could not give this callback's input (the headers, body or trailers): sent in
    /// place of the event that would have carried it.
    ReadFailure(String),
}

/// What the callback that delivered the event returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Let what this callback delivered (and everything held before it) go on.
    Continue,
    /// Hold it (or it was answered locally).
    Pause,
}

/// Host calls to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// Change the request's headers to these; when that may select another route
    /// ([`HeaderRewrite::reselects_route`]), the host picks the route again before the request
    /// goes on. A failure of either is a [`Event::HostFailure`].
    SetRequestHeaders(Box<HeaderRewrite>),
    /// Publish the verified principal to the filters after brickgate (Envoy filter state or
    /// dynamic metadata), before the request goes on to them. A failure is a
    /// [`Event::HostFailure`]: a filter keyed on the principal must never see the request
    /// without it.
    Publish(Box<Principal>),
    /// Replace the request's trailers with these.
    SetRequestTrailers(Headers),
    /// Answer locally; the upstream never receives the request.
    SendResponse(DenyResponse),
    /// Let a held stream go on (from outside its own callbacks).
    Resume,
    /// Obtain a Databricks token; answer with [`Event::UpstreamToken`].
    FetchUpstreamToken(TokenRequest),
    /// Count the decision and write its audit record (one per answered stream).
    Record(Box<Record>),
    /// A line for the operator (the adapter logs it at warning level).
    Warn(String),
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub reply: Reply,
    pub actions: Vec<HostAction>,
}

impl Step {
    pub(super) fn pause() -> Step {
        Step {
            reply: Reply::Pause,
            actions: Vec::new(),
        }
    }

    pub(super) fn proceed() -> Step {
        Step {
            reply: Reply::Continue,
            actions: Vec::new(),
        }
    }
}
