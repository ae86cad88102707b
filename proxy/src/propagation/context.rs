//! The one internal trace context every codec converts to and from.

use super::tracestate::TraceState;

/// A 128-bit trace id; never zero (every format treats zero as "absent").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

/// A 64-bit span id; never zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

/// The constructors both ids share: zero is not an id, and a random one is drawn
/// until it is non-zero.
macro_rules! nonzero_id {
    ($id:ident, $int:ty, $draw:path) => {
        impl $id {
            /// The id, or `None` for zero (invalid in every format).
            pub const fn new(id: $int) -> Option<Self> {
                if id == 0 {
                    None
                } else {
                    Some(Self(id))
                }
            }

            /// A random id. For a trace id all 128 bits are random, which satisfies
            /// the W3C Level 2 "random" flag (the rightmost 56 bits are random).
            pub fn random() -> Self {
                loop {
                    if let Some(id) = Self::new($draw(..)) {
                        return id;
                    }
                }
            }

            /// The id's value.
            pub const fn get(self) -> $int {
                self.0
            }
        }
    };
}

nonzero_id!(TraceId, u128, fastrand::u128);
nonzero_id!(SpanId, u64, fastrand::u64);

// === impl TraceId ===

impl TraceId {
    /// The high 64 bits (Datadog's `_dd.p.tid`; zero for a 64-bit id).
    pub const fn high(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The low 64 bits (Datadog's `x-datadog-trace-id`).
    pub const fn low(self) -> u64 {
        self.0 as u64
    }

    /// Whether the id fits in 64 bits (high half zero).
    pub const fn is_64_bit(self) -> bool {
        self.high() == 0
    }
}

/// The sampling decision carried by a context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// The caller decided to record this trace.
    Sampled,
    /// The caller decided not to.
    NotSampled,
    /// No decision was made upstream: the receiver decides.
    #[default]
    Deferred,
}

impl Sampling {
    /// `Sampled` / `NotSampled` from a boolean.
    pub const fn from_bool(sampled: bool) -> Self {
        if sampled {
            Self::Sampled
        } else {
            Self::NotSampled
        }
    }

    /// Whether a decision to record was made.
    pub const fn is_sampled(self) -> bool {
        matches!(self, Self::Sampled)
    }
}

/// Datadog's propagation fields that W3C has no slot for; carried so that
/// Datadog → W3C (`dd=` tracestate member) → Datadog loses nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatadogMeta {
    /// `x-datadog-sampling-priority` / `s:` (-1 user drop, 0 auto drop, 1 auto
    /// keep, 2 user keep).
    pub priority: Option<i8>,
    /// `x-datadog-origin` / `o:` (e.g. `synthetics`, `rum`).
    pub origin: Option<String>,
    /// The last Datadog span id (`p:`), so Datadog can re-parent across non-Datadog hops.
    pub last_parent: Option<SpanId>,
    /// Propagated `_dd.p.*` tags other than `_dd.p.tid`, key without the `_dd.p.`
    /// prefix (`dm` → `-4`), in arrival order.
    pub tags: Vec<(String, String)>,
}

/// A caller's trace context, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id.
    pub trace_id: TraceId,
    /// The caller's span id: the parent of the span the receiver starts.
    pub parent_id: SpanId,
    /// The caller's sampling decision.
    pub sampling: Sampling,
    /// Debug / force-trace (B3 `X-B3-Flags: 1`, `b3: …-d`, Jaeger flag 0x2).
    pub debug: bool,
    /// W3C Level 2 random flag: the trace id's rightmost 56 bits are random.
    pub random: bool,
    /// The trace id arrived as 64 bits (B3 16-hex, Datadog without `_dd.p.tid`,
    /// short Jaeger ids), so 64-bit neighbours get it back in that width.
    pub narrow: bool,
    /// W3C `tracestate`, validated, order preserved.
    pub tracestate: TraceState,
    /// Datadog-only fields, when the context came from (or through) Datadog.
    /// Boxed: most contexts carry none, and a context is moved several times
    /// per request (codec, merge, span start), so it stays small enough to move
    /// without a `memcpy` call.
    pub datadog: Option<Box<DatadogMeta>>,
}

impl TraceContext {
    /// A context with only the ids and decision set.
    pub fn new(trace_id: TraceId, parent_id: SpanId, sampling: Sampling) -> Self {
        Self {
            trace_id,
            parent_id,
            sampling,
            debug: false,
            random: false,
            narrow: false,
            tracestate: TraceState::default(),
            datadog: None,
        }
    }
}
