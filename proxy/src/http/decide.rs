//! The sampling step of the trace layer: gather what the sampler needs from the
//! request and the caller's context, ask it, and write its decision into the
//! context the sidecar forwards — so every injected format carries it: the W3C
//! sampled flag (with `ot=th:` for a probability decision), B3's sampled flag,
//! and Datadog's priority with its `_dd.p.dm` decision mechanism.

use http::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::Request;

use super::{authority_of, is_grpc};
use crate::propagation::TraceId;
use crate::propagation::{Sampling, TraceContext};
use crate::sampling::{Decision, Input, Reason, RouteId, Sampler};

/// Datadog's user-keep priority: a force signal when it arrives.
const USER_KEEP: i8 = 2;

/// What the request says about sampling, read once per request.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    tenant: Option<&'a str>,
    force_header: bool,
    grpc: Option<(&'a str, &'a str)>,
    probe: bool,
}

/// The headers [`SamplingHeaders`] reads from one request, gathered in a pass
/// over its headers ([`SamplingHeaders::see`]) — the trace layer's own pass,
/// which finds the trace headers — instead of a hashed lookup each.
#[derive(Debug, Default)]
pub struct Seen<'a> {
    /// The tenant: the first configured tenant header with a text value, as
    /// its position in the configuration and its value.
    tenant: Option<(usize, &'a str)>,
    /// The force header's first value.
    force: Option<&'a HeaderValue>,
    /// The `User-Agent`'s first value.
    user_agent: Option<&'a HeaderValue>,
}

impl Seen<'_> {
    /// Whether the request carries the force header.
    pub fn force(&self) -> bool {
        self.force.is_some()
    }
}

/// How the sampler reads requests: the configured header names, parsed once.
#[derive(Debug)]
pub struct SamplingHeaders {
    force: Option<HeaderName>,
    tenant: Vec<HeaderName>,
    baggage_key: Option<String>,
    /// `sampling.probes`, unless probes are traced.
    probes: Option<Probes>,
}

/// How health checks and probes are recognised (`sampling.probes`).
#[derive(Debug)]
struct Probes {
    user_agents: Vec<String>,
    paths: Vec<String>,
}

impl RequestFacts<'_> {
    /// The request's tenant id.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant
    }

    /// Whether the request is a health check or probe (`sampling.probes`).
    pub fn probe(&self) -> bool {
        self.probe
    }
}

impl SamplingHeaders {
    /// From the validated `sampling` config.
    pub fn new(config: &meshtrace_config::Sampling) -> Self {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).ok();
        Self {
            force: config.force_header.as_deref().and_then(name),
            tenant: config
                .tenant
                .headers
                .iter()
                .filter_map(|h| name(h))
                .collect(),
            baggage_key: config.tenant.baggage_key.clone(),
            probes: (!config.probes.trace).then(|| Probes {
                user_agents: config.probes.user_agents.clone(),
                paths: config.probes.paths.clone(),
            }),
        }
    }

    /// Whether `req` is a health check or probe: a configured `User-Agent`
    /// prefix (ASCII case-insensitive) or exact path.
    pub fn is_probe<B>(&self, req: &Request<B>) -> bool {
        self.probe(req.uri().path(), req.headers().get(USER_AGENT))
    }

    /// [`is_probe`](Self::is_probe) for a request's path and `User-Agent`.
    fn probe(&self, path: &str, agent: Option<&HeaderValue>) -> bool {
        let Some(probes) = &self.probes else {
            return false;
        };
        if probes.paths.iter().any(|p| p == path) {
            return true;
        }
        let Some(agent) = agent else {
            return false;
        };
        let agent = agent.as_bytes();
        probes.user_agents.iter().any(|prefix| {
            agent
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        })
    }

    /// Removes the force header: from an untrusted caller it is no signal, and
    /// the app behind the listener must not read it as one either.
    pub fn remove_force(&self, headers: &mut HeaderMap) {
        if let Some(force) = &self.force {
            headers.remove(force);
        }
    }

    /// Notes header `name: value` in `seen` if it is one these settings read.
    /// Called for every header of a request, in the map's order.
    pub fn see<'a>(&self, seen: &mut Seen<'a>, name: &str, value: &'a HeaderValue) {
        if name == USER_AGENT.as_str() {
            seen.user_agent.get_or_insert(value);
        }
        if self.force.as_ref().is_some_and(|f| f.as_str() == name) {
            seen.force.get_or_insert(value);
        }
        if let Some(rank) = self.tenant.iter().position(|h| h.as_str() == name) {
            if seen.tenant.is_none_or(|(first, _)| rank < first) {
                if let Ok(tenant) = value.to_str() {
                    seen.tenant = Some((rank, tenant));
                }
            }
        }
    }

    /// Reads the tenant, the force header and the gRPC method of `req`.
    pub fn facts<'a, B>(&self, req: &'a Request<B>) -> RequestFacts<'a> {
        let mut seen = Seen::default();
        for (name, value) in req.headers() {
            self.see(&mut seen, name.as_str(), value);
        }
        self.facts_seen(req, &seen)
    }

    /// [`facts`](Self::facts) from what [`see`](Self::see) gathered from
    /// `req`'s headers.
    pub fn facts_seen<'a, B>(&self, req: &'a Request<B>, seen: &Seen<'a>) -> RequestFacts<'a> {
        let tenant = seen.tenant.map(|(_, tenant)| tenant).or_else(|| {
            self.baggage_key
                .as_deref()
                .and_then(|k| baggage(req.headers(), k))
        });
        let force_header = seen
            .force
            .is_some_and(|v| matches!(v.as_bytes(), b"1" | b"true" | b"yes" | b"TRUE" | b"True"));
        let grpc = is_grpc(req)
            .then(|| req.uri().path().strip_prefix('/')?.split_once('/'))
            .flatten();
        RequestFacts {
            tenant,
            force_header,
            grpc,
            probe: self.probe(req.uri().path(), seen.user_agent),
        }
    }
}

/// The value of `key` in the W3C `baggage` header (`k=v;prop, k2=v2`).
fn baggage<'a>(headers: &'a HeaderMap, key: &str) -> Option<&'a str> {
    headers
        .get_all("baggage")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|member| {
            let (k, rest) = member.split_once('=')?;
            (k.trim() == key).then(|| rest.split(';').next().unwrap_or("").trim())
        })
        .filter(|v| !v.is_empty())
}

/// Asks `sampler` about this request. `parent` is the caller's decision, if any;
/// `context` is the context about to be forwarded (its trace id is decided).
#[allow(clippy::too_many_arguments)]
pub fn decide<B>(
    sampler: &Sampler,
    trusted: bool,
    facts: &RequestFacts<'_>,
    req: &Request<B>,
    parent: Option<bool>,
    context: &TraceContext,
    now: tokio::time::Instant,
) -> Decision {
    sampler.decide(&input(trusted, facts, req, parent, context), now)
}

/// What the sampler is asked about this request (see [`decide`]).
pub fn input<'a, B>(
    trusted: bool,
    facts: &RequestFacts<'a>,
    req: &'a Request<B>,
    parent: Option<bool>,
    context: &TraceContext,
) -> Input<'a> {
    let dd_user_keep = context
        .datadog
        .as_ref()
        .is_some_and(|m| m.priority == Some(USER_KEEP));
    Input {
        trusted,
        force_signal: context.debug || dd_user_keep || facts.force_header,
        tenant: facts.tenant,
        parent,
        trace_id: context.trace_id,
        authority: authority_of(req),
        method: req.method().as_str(),
        path: req.uri().path(),
        grpc: facts.grpc,
        probe: facts.probe,
    }
}

/// A trace id for inputs that only pick a route (rules never read it).
const ROUTE_ONLY: TraceId = match TraceId::new(1) {
    Some(id) => id,
    None => panic!("1 is a valid trace id"),
};

/// The sampling route `req` belongs to (the first rule whose criteria hold, else
/// the default route), for what happens after the decision: boost triggers
/// and tail keep read it when the response ends.
pub fn route_of<B>(sampler: &Sampler, req: &Request<B>) -> RouteId {
    let grpc = is_grpc(req)
        .then(|| req.uri().path().strip_prefix('/')?.split_once('/'))
        .flatten();
    let input = Input {
        trusted: false,
        force_signal: false,
        tenant: None,
        parent: None,
        trace_id: ROUTE_ONLY,
        authority: authority_of(req),
        method: req.method().as_str(),
        path: req.uri().path(),
        grpc,
        probe: false,
    };
    sampler.route_of(&input)
}

/// Writes `decision` into the forwarded context. A parent decision changes
/// nothing; the sidecar's own decisions set the sampled flag, the consistent
/// probability threshold (`ot=th:`), and Datadog's priority and mechanism.
///
/// The debug flag is passed on only when a force signal decided: one refused
/// over its budget must not reach the next hop as B3 debug, a W3C sampled flag
/// or Datadog user keep (every format writes debug as a force).
pub fn apply(decision: Decision, context: &mut TraceContext) {
    context.debug &= decision.reason == Reason::ForceSignal;
    if decision.reason == Reason::Parent {
        return;
    }
    context.sampling = Sampling::from_bool(decision.sampled);
    // The threshold tells later hops the adjusted count; rate 1 (`th:0`) is the
    // default assumption and would only add a header to every request.
    // (Threshold zero is the one whose `th` is "0": checked before formatting,
    // so a request at rate 1 allocates nothing here.)
    if let Some(th) = decision
        .threshold
        .filter(|t| decision.sampled && t.to_bits() != 0)
    {
        context.tracestate.set_front("ot", &format!("th:{th}"));
    }
    // Datadog, when the trace came through it (headers or a `dd=` member): user
    // keep for forced traces, auto keep/drop otherwise, and the decision maker
    // (`_dd.p.dm`: -4 manual, -3 rule — a boost is a rule's —, -0 default) on
    // kept traces. Without
    // Datadog fields, a Datadog neighbour gets priority 1/0 from the sampled flag.
    let Some(meta) = context.datadog.as_mut() else {
        return;
    };
    let forced = matches!(
        decision.reason,
        Reason::ForceSignal | Reason::ForcedTenant | Reason::ForcedWorkload
    );
    let (priority, mechanism) = match (decision.sampled, decision.reason) {
        (true, _) if forced => (USER_KEEP, "-4"),
        (true, Reason::Rule | Reason::Boost) => (1, "-3"),
        (true, _) => (1, "-0"),
        (false, _) => (0, ""),
    };
    meta.priority = Some(priority);
    meta.tags.retain(|(k, _)| k != "dm");
    if !mechanism.is_empty() {
        meta.tags.push(("dm".into(), mechanism.into()));
    }
}

#[cfg(test)]
mod tests;
