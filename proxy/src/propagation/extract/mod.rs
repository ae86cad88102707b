//! The extraction policy: read the configured formats in order, merge those that
//! agree, settle those that do not.
//!
//! - Formats are read in `propagation.extract` order. Each one found is counted
//!   `valid` or `invalid`; an invalid one is treated as absent.
//! - Contexts with the **same trace id** are merged into the first (the primary):
//!   it keeps its ids and fills what it lacks from the others — a deferred
//!   decision takes another format's decision, debug is set if any format says
//!   so, an empty tracestate takes W3C's, missing Datadog fields come from
//!   Datadog's headers (which win over a `dd=` member field by field — except
//!   the last Datadog span, `p:`: a sidecar writes its own span id in
//!   `x-datadog-parent-id` but keeps the last Datadog span in `p:`, and a
//!   Datadog tracer writing both writes the same id in each).
//! - Contexts with a **different trace id** conflict. The winner is the first in
//!   order (`on_conflict: first`) or W3C when it is valid (`on_conflict:
//!   tracecontext`); each loser is counted `conflict` and kept, so the span can
//!   link to it.
//! - A format carrying only a decision (`b3: 0`) applies when no context does.

use http::{HeaderMap, HeaderValue};
use meshtrace_config::ConflictPolicy;

use super::context::{Sampling, SpanId, TraceContext, TraceId};
use super::{b3, datadog, jaeger, w3c, Extracted, Format, Outcome, CALLER_HEADER_NAME};

/// A set of formats, as a bitset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formats(u8);

impl Formats {
    /// Adds `format`.
    pub fn insert(&mut self, format: Format) {
        self.0 |= 1 << format as u8;
    }

    /// Whether `format` is in the set.
    pub fn contains(self, format: Format) -> bool {
        self.0 & (1 << format as u8) != 0
    }

    /// The formats in the set, in discriminant order.
    pub fn iter(self) -> impl Iterator<Item = Format> {
        Format::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Whether no format is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Every format.
    pub const fn all() -> Self {
        Self((1 << Format::ALL.len()) - 1)
    }

    /// Only `format`.
    pub const fn only(format: Format) -> Self {
        Self(1 << format as u8)
    }

    /// The formats in either set.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The formats in `self` but not in `other`.
    #[must_use]
    pub const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether any legacy format (anything but W3C) is in the set.
    pub const fn any_legacy(self) -> bool {
        self.0 & !(1 << Format::TraceContext as u8) != 0
    }
}

impl FromIterator<Format> for Formats {
    fn from_iter<I: IntoIterator<Item = Format>>(formats: I) -> Self {
        let mut set = Self::default();
        for format in formats {
            set.insert(format);
        }
        set
    }
}

/// A context that lost a conflict, for a span link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discarded {
    /// Where it came from.
    pub format: Format,
    /// Its trace id.
    pub trace_id: TraceId,
    /// Its parent span id.
    pub span_id: SpanId,
}

/// Which trace headers a request carries, from one pass over its header names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present {
    /// Formats with at least one header present, valid or not (W3C: `traceparent`
    /// or `tracestate`).
    pub formats: Formats,
    /// The mesh's caller-identity header ([`CALLER_HEADER_NAME`]).
    pub caller: bool,
}

/// What a request carried, normalised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The winning context, merged with the formats that agree with it.
    pub context: Option<TraceContext>,
    /// A decision carried without ids, when no format carried a context.
    pub decision: Option<(Sampling, bool)>,
    /// The formats the context (or decision) came from.
    pub formats: Formats,
    /// Contexts that lost a conflict.
    pub discarded: Vec<Discarded>,
}

/// The configured extraction policy.
#[derive(Clone, Debug)]
pub struct Extractor {
    order: Vec<Format>,
    conflict: ConflictPolicy,
}

impl Extractor {
    /// Reads `order`, settling conflicts by `conflict`.
    pub fn new(order: Vec<Format>, conflict: ConflictPolicy) -> Self {
        Self { order, conflict }
    }

    /// Extracts, reporting each format's outcome to `count`.
    ///
    /// Contexts are merged as they are read (no intermediate list): the first
    /// valid one is the primary — under `on_conflict: tracecontext`, W3C is read
    /// first so that it is the primary whenever it is valid.
    pub fn extract(&self, headers: &HeaderMap, count: impl FnMut(Format, Outcome)) -> Incoming {
        self.extract_scanned(headers, &scan(headers), count)
    }

    /// [`extract`](Self::extract) when the caller has already passed over the
    /// headers with [`scan`].
    pub fn extract_scanned(
        &self,
        headers: &HeaderMap,
        scanned: &Scan<'_>,
        mut count: impl FnMut(Format, Outcome),
    ) -> Incoming {
        let mut incoming = Incoming::default();
        let present = scanned.present.formats;
        if present.is_empty() {
            return incoming;
        }
        let w3c_first = self.conflict == ConflictPolicy::Tracecontext
            && present.contains(Format::TraceContext)
            && self.order.contains(&Format::TraceContext);
        let order = w3c_first
            .then_some(Format::TraceContext)
            .into_iter()
            .chain(
                self.order
                    .iter()
                    .copied()
                    .filter(|f| !(w3c_first && *f == Format::TraceContext)),
            )
            .filter(|f| present.contains(*f));
        let mut primary: Option<(Format, TraceContext)> = None;
        let mut decision_format = None;
        for format in order {
            let extracted = match format {
                Format::TraceContext => w3c::extract_found(headers, scanned.w3c),
                Format::Datadog => datadog::extract_fields(&scanned.datadog),
                _ => read(format, headers),
            };
            match extracted {
                Extracted::Absent => {}
                Extracted::Invalid(_) => count(format, Outcome::Invalid),
                Extracted::DecisionOnly { sampling, debug } => {
                    count(format, Outcome::Valid);
                    if incoming.decision.is_none() {
                        incoming.decision = Some((sampling, debug));
                        decision_format = Some(format);
                    }
                }
                Extracted::Context(other) => match &mut primary {
                    None => {
                        count(format, Outcome::Valid);
                        incoming.formats.insert(format);
                        primary = Some((format, other));
                    }
                    Some((primary_format, context)) if other.trace_id == context.trace_id => {
                        count(format, Outcome::Valid);
                        incoming.formats.insert(format);
                        merge(context, *primary_format, other, format);
                    }
                    Some(_) => {
                        count(format, Outcome::Conflict);
                        incoming.discarded.push(Discarded {
                            format,
                            trace_id: other.trace_id,
                            span_id: other.parent_id,
                        });
                    }
                },
            }
        }
        match primary {
            Some((_, mut context)) => {
                if !incoming.formats.contains(Format::TraceContext) {
                    // Only W3C carries a tracestate; another trace's must not leak in.
                    context.tracestate = Default::default();
                }
                incoming.context = Some(context);
                incoming.decision = None;
            }
            None => {
                if let Some(format) = decision_format {
                    incoming.formats.insert(format);
                }
            }
        }
        incoming
    }
}

/// One pass over a request's headers: which trace headers appear at all (so
/// a request pays hashed lookups, to read and to remove, only for the formats
/// it carries), and the lines of the formats read straight from the pass —
/// W3C's and Datadog's — so that extracting them walks the map no more.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scan<'a> {
    /// The trace headers present.
    pub present: Present,
    w3c: w3c::Found<'a>,
    datadog: datadog::Fields<'a>,
}

/// Passes over `headers` once (see [`Scan`]).
pub fn scan(headers: &HeaderMap) -> Scan<'_> {
    scan_with(headers, |_, _| {})
}

/// [`scan`], handing every header to `other` on the way, so that the caller
/// reads what else it needs from the same pass instead of hashed lookups.
pub fn scan_with<'a>(
    headers: &'a HeaderMap,
    mut other: impl FnMut(&'a str, &'a HeaderValue),
) -> Scan<'a> {
    let mut scan = Scan::default();
    for (name, value) in headers {
        let name = name.as_str();
        other(name, value);
        let format = match name.as_bytes().first() {
            Some(b't') if scan.w3c.add(name, value) => Format::TraceContext,
            Some(b'b') if name == "b3" => Format::B3Single,
            Some(b'x') if name.starts_with("x-b3-") => Format::B3Multi,
            Some(b'x') if scan.datadog.add(name, value) => Format::Datadog,
            Some(b'x') if name == CALLER_HEADER_NAME => {
                scan.present.caller = true;
                continue;
            }
            Some(b'u') if name == "uber-trace-id" => Format::Jaeger,
            _ => continue,
        };
        scan.present.formats.insert(format);
    }
    scan
}

/// The trace headers that appear at all ([`scan`]'s [`Present`]).
pub fn present(headers: &HeaderMap) -> Present {
    scan(headers).present
}

/// What one format's codec finds in `headers`, as extraction reads it.
pub fn read(format: Format, headers: &HeaderMap) -> Extracted {
    match format {
        Format::TraceContext => w3c::extract(headers),
        Format::B3Multi => b3::extract_multi(headers),
        Format::B3Single => b3::extract_single(headers),
        Format::Datadog => datadog::extract(headers),
        Format::Jaeger => jaeger::extract(headers),
    }
}

/// Fills what `primary` lacks from `other` (same trace id).
fn merge(
    primary: &mut TraceContext,
    primary_format: Format,
    other: TraceContext,
    other_format: Format,
) {
    if primary.sampling == Sampling::Deferred {
        primary.sampling = other.sampling;
    }
    primary.debug |= other.debug;
    primary.random |= other.random && other_format == Format::TraceContext;
    primary.narrow &= other.narrow;
    if primary.tracestate.is_empty() {
        primary.tracestate = other.tracestate;
    }
    primary.datadog = match (primary.datadog.take(), other.datadog) {
        (None, theirs) => theirs,
        (mine, None) => mine,
        (Some(mine), Some(theirs)) => {
            // Datadog's own headers are authoritative over a `dd=` member.
            let (mut headers, member) =
                if other_format == Format::Datadog && primary_format != Format::Datadog {
                    (theirs, mine)
                } else {
                    (mine, theirs)
                };
            let member = *member;
            headers.priority = headers.priority.or(member.priority);
            headers.origin = headers.origin.take().or(member.origin);
            headers.last_parent = member.last_parent.or(headers.last_parent);
            if headers.tags.is_empty() {
                headers.tags = member.tags;
            }
            Some(headers)
        }
    };
}

#[cfg(test)]
mod tests;
