//! Sampling: whether the sidecar records a trace.
//!
//! [`Sampler::decide`] turns what the caller read from a request ([`Input`]) into a
//! [`Decision`]. It does no I/O and reads no clock (the caller passes `now`); its
//! own state is one lock-free token bucket per budget (force signals, forced
//! tenants, the forced workload) and rule reservoir; the routes' live state
//! (adaptive probabilities, caps, boosts) is in [`Routes`], which a timer ticks. One [`Sampler`] is built per
//! listener from the `sampling` config section and shared by every connection.
//!
//! # Decision order (first that applies wins)
//!
//! 0. **Probe** ([`Reason::Probe`]): a health check or probe ([`Input::probe`],
//!    matched by the caller from `sampling.probes`) is not traced, before
//!    anything else, and counts towards no route.
//! 1. **Force signal** ([`Reason::ForceSignal`]): on a trusted listener, a B3 debug
//!    flag, Datadog priority 2 or the configured force header samples the trace,
//!    within the listener's `force_signal_budget` (a token bucket: one caller that
//!    forces every request must not turn off sampling for the mesh). From untrusted
//!    callers these signals are ignored. Over budget, steps 2–6 decide and the
//!    reason is [`Reason::BudgetExceeded`]; the signal is not passed on (the
//!    caller clears the debug flag and writes Datadog priority 1/0). B3 debug and
//!    Datadog priority 2 also say "sampled", which step 5 then follows as the
//!    parent's decision, so the trace stays whole without being forced further.
//! 2. **Forced tenant** ([`Reason::ForcedTenant`]): a request of a tenant listed in
//!    `forced_tenants` takes a token from that tenant's budget and is decided with
//!    the tenant's `rate` (rate 1 → always). A forced tenant only adds traces, so
//!    this step is skipped — no token spent — when the parent already sampled, and
//!    when the parent did not and `override_parent` is off. Over budget, the
//!    later steps decide, but the reason is [`Reason::BudgetExceeded`] so that
//!    the budget's effect shows in the metrics.
//! 3. **Forced workload** ([`Reason::ForcedWorkload`]): with `forced_workload`
//!    set (an incident override of this service), a request takes a token from
//!    its budget and is decided with its `rate`, even when the parent said "not
//!    sampled" — an incident wants to see this service whoever called it. Like a
//!    tenant it only adds traces (skipped when the parent sampled); over budget,
//!    steps 4–6 decide with reason [`Reason::BudgetExceeded`].
//! 4. **Boost** ([`Reason::Boost`]): while a route is boosted ([`Routes`]; one
//!    relaxed load tells whether any is), a request of that route whose parent did
//!    not already sample takes a token of the boost's budget and is decided at
//!    the boost's current rate, like the forced workload. Over budget, steps
//!    5–6 decide with reason [`Reason::BudgetExceeded`].
//! 5. **Parent** ([`Reason::Parent`]): a caller's decision is followed both ways
//!    (the OTel `ParentBased` sampler), so a trace is recorded whole or not at all.
//! 6. **Root** ([`Reason::Rule`], [`Reason::Default`]): the request's route — the
//!    first rule whose every criterion holds (authority exact and host any-port,
//!    both case-insensitive; method case-insensitive; path prefix; gRPC service
//!    and method), else the default route — decides: its reservoir first (so
//!    many traces a second, the AWS X-Ray model), then its probability: the
//!    fixed `rate`, or for a `target_traces_per_second` route the live
//!    probability its controller sets every period, followed, when it samples, by
//!    the route's cap bucket (empty → not sampled; the `adaptive` module gives the model). Every root
//!    decision of this step and of step 4 is counted for the route
//!    ([`Routes::report`]); the adaptive controller reads the count.
//!
//! # Consistent probability sampling
//!
//! Every rate is applied as OpenTelemetry *consistent probability sampling*
//! ([`consistent`]; specs: OTel [TraceState: Probability Sampling] and
//! [TraceState Handling] § "Sampling threshold value `th`", from OTEP 235; W3C
//! Trace Context Level 2 § "Randomness of trace-id"): the trace is kept
//! iff the trace id's 56 random bits ([`randomness`]) are at least the rate's
//! [`Threshold`]. Every sidecar with the same rate keeps the same traces, and one
//! with a lower rate keeps a subset of them, so traces stay whole across hops that
//! each decide for themselves.
//!
//! [`Decision::threshold`] is set only when a probability decision sampled the
//! trace (an adaptive route's: the live probability's threshold); the caller writes it as `ot=th:<th>` in `tracestate`. Every other
//! decision leaves it `None`, as the spec asks of stages whose probability is
//! unknown (force signals, reservoirs): the caller erases any `th`. For
//! [`Reason::Parent`] the caller keeps the parent's `th` (the spec's parent-based
//! threshold), erasing it if it is inconsistent with the sampled flag
//! ([`Threshold::parse_th`] and [`Threshold::accepts`] give that check).
//!
//! A forced tenant's budget gate looks only at arrival times, never at the trace's
//! randomness, so the threshold written after it still states the probability
//! the trace was kept with (the spec: a conditional stage must not condition its
//! threshold on the randomness).
//!
//! [TraceState: Probability Sampling]: https://opentelemetry.io/docs/specs/otel/trace/tracestate-probability-sampling/
//! [TraceState Handling]: https://opentelemetry.io/docs/specs/otel/trace/tracestate-handling/

mod adaptive;
mod boost;
mod budget;
pub mod consistent;
mod routes;
mod rules;
pub mod simulation;
mod window;

use tokio::time::Instant;

use crate::propagation::TraceId;

pub use consistent::{randomness, Threshold};
pub use routes::{RouteEvent, RouteId, Routes};

/// What the sampler needs to know about one request.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// Whether the listener trusts its callers; force signals count only then.
    pub trusted: bool,
    /// A force signal arrived (B3 debug, Datadog priority 2, the force header set
    /// to a true value); the caller computes it.
    pub force_signal: bool,
    /// The request's tenant id, if one was found.
    pub tenant: Option<&'a str>,
    /// The caller's decision (`Some(sampled)`), or `None` for a root.
    pub parent: Option<bool>,
    /// The trace id, whose random bits make probability decisions consistent.
    pub trace_id: TraceId,
    /// The request's `host[:port]`.
    pub authority: Option<&'a str>,
    /// The request method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// `(package.Service, Method)` when the request is gRPC.
    pub grpc: Option<(&'a str, &'a str)>,
    /// A health check or probe (`sampling.probes`; the caller matches it): not
    /// traced, before every other step.
    pub probe: bool,
}

/// Whether to record the trace, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Record (and propagate "sampled").
    pub sampled: bool,
    /// Which step of the decision order decided; a metric label.
    pub reason: Reason,
    /// The threshold a probability decision sampled with, for `ot=th:`; `None`
    /// for every decision that was not a probability decision that sampled.
    pub threshold: Option<Threshold>,
}

/// Which step decided, in the order of the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The caller's decision was followed.
    Parent,
    /// A trusted force signal.
    ForceSignal,
    /// A forced tenant, within its budget.
    ForcedTenant,
    /// The forced workload (an incident override of this service), within its
    /// budget.
    ForcedWorkload,
    /// A force signal, a forced tenant or the forced workload over budget; a
    /// later step decided.
    BudgetExceeded,
    /// A sampling rule (its reservoir or its rate).
    Rule,
    /// No rule matched: `default_rate`.
    Default,
    /// Not sampled, but the span was kept because the response was an error
    /// (sidecar-local tail keep; never a decision sent downstream).
    TailError,
    /// Not sampled, but the span was kept because the request was slow.
    TailSlow,
    /// The route's automatic incident boost, within its budget.
    Boost,
    /// A health check or probe: not traced (`sampling.probes`).
    Probe,
}

/// Decides whether traces are recorded; built once per listener from the
/// `sampling` config section and shared by its connections.
#[derive(Debug)]
pub struct Sampler {
    /// The budget of trusted force signals.
    force: budget::TokenBucket,
    /// Sorted by tenant id.
    tenants: Vec<rules::Tenant>,
    /// The forced workload, when set.
    workload: Option<rules::Forced>,
    rules: Vec<rules::Rule>,
    /// The default route's reservoir (`sampling.default.reservoir_per_second`).
    default_reservoir: Option<budget::TokenBucket>,
    /// The routes' live state (adaptive rates, boosts), shared with the other
    /// listener's sampler.
    routes: std::sync::Arc<Routes>,
    /// Time zero of the token buckets.
    epoch: Instant,
}

// === impl Sampler ===

impl Sampler {
    /// Compiles the `sampling` section (already validated), with routes of its
    /// own (tests, benches, `explain`).
    pub fn new(config: &meshtrace_config::Sampling) -> Self {
        let routes = std::sync::Arc::new(Routes::new(config, Instant::now()));
        Self::with_routes(config, routes)
    }

    /// Compiles the `sampling` section with the process's shared `routes` (built
    /// from the same section).
    pub fn with_routes(
        config: &meshtrace_config::Sampling,
        routes: std::sync::Arc<Routes>,
    ) -> Self {
        Self {
            routes,
            force: budget::TokenBucket::new(config.force_signal_budget.traces_per_second),
            tenants: rules::tenants(&config.forced_tenants),
            workload: config.forced_workload.as_ref().map(rules::Forced::new),
            rules: config.rules.iter().map(rules::Rule::new).collect(),
            default_reservoir: config
                .default
                .as_ref()
                .and_then(|d| d.reservoir_per_second)
                .map(|n| budget::TokenBucket::new(f64::from(n))),
            epoch: Instant::now(),
        }
    }

    /// Compiles the `sampling` section of a reloaded config. Budgets and
    /// reservoirs that carry over — the force-signal budget, a forced tenant with
    /// the same id, a rule with the same criteria — keep what they have spent, so
    /// that reloads, however frequent, never grant a fresh burst. New ones start
    /// full.
    ///
    /// Requests already deciding on `previous` may still take a token from its
    /// buckets after the copy: at most one burst's worth across one swap.
    pub fn reloaded(config: &meshtrace_config::Sampling, previous: &Sampler) -> Self {
        let routes = Routes::reloaded(config, &previous.routes, Instant::now());
        Self::reloaded_with(config, previous, std::sync::Arc::new(routes))
    }

    /// [`Self::reloaded`] with the process's shared, already reloaded `routes`.
    pub fn reloaded_with(
        config: &meshtrace_config::Sampling,
        previous: &Sampler,
        routes: std::sync::Arc<Routes>,
    ) -> Self {
        let mut next = Self {
            epoch: previous.epoch,
            ..Self::with_routes(config, routes)
        };
        next.force.carry(&previous.force);
        for tenant in &mut next.tenants {
            if let Some(old) = rules::find(&previous.tenants, &tenant.id) {
                tenant.budget.carry(&old.budget);
            }
        }
        if let (Some(next), Some(old)) = (next.workload.as_mut(), previous.workload.as_ref()) {
            next.budget.carry(&old.budget);
        }
        let old = previous.default_reservoir.as_ref();
        if let (Some(next), Some(old)) = (next.default_reservoir.as_mut(), old) {
            next.carry(old);
        }
        for rule in &mut next.rules {
            let old = previous.rules.iter().find(|old| old.same_criteria(rule));
            let old = old.and_then(|old| old.reservoir.as_ref());
            if let (Some(reservoir), Some(old)) = (rule.reservoir.as_mut(), old) {
                reservoir.carry(old);
            }
        }
        next
    }

    /// Decides for one request at `now` (from [`Instant::now`], so that tests can
    /// pause the clock or pass their own instants).
    pub fn decide(&self, input: &Input<'_>, now: Instant) -> Decision {
        if input.probe {
            return Decision {
                sampled: false,
                reason: Reason::Probe,
                threshold: None,
            };
        }
        let mut over_budget = false;
        if input.trusted && input.force_signal {
            if self.force.try_take(self.nanos(now)) {
                return Decision::forced(Reason::ForceSignal);
            }
            over_budget = true;
        }
        let tenant = input.tenant.and_then(|id| rules::find(&self.tenants, id));
        if let Some(tenant) = tenant.filter(|t| t.applies(input.parent)) {
            if tenant.budget.try_take(self.nanos(now)) {
                return Decision::by_probability(tenant.threshold, input, Reason::ForcedTenant);
            }
            over_budget = true;
        }
        if let Some(workload) = self.workload.as_ref().filter(|w| w.applies(input.parent)) {
            if workload.budget.try_take(self.nanos(now)) {
                return Decision::by_probability(workload.threshold, input, Reason::ForcedWorkload);
            }
            over_budget = true;
        }
        let mut route = None;
        if self.routes.any_boost() && input.parent != Some(true) {
            let id = self.route_of(input);
            route = Some(id);
            match self.routes.boosted(id, now) {
                Some(Ok(threshold)) => {
                    let decision = Decision::by_probability(threshold, input, Reason::Boost);
                    if input.parent.is_none() {
                        self.routes.count_root(id, decision.sampled);
                    }
                    return decision;
                }
                Some(Err(())) => over_budget = true,
                None => {}
            }
        }
        let decision = self.parent_or_root(input, route, now);
        if over_budget {
            return Decision {
                reason: Reason::BudgetExceeded,
                ..decision
            };
        }
        decision
    }

    /// Steps 6 and 7: the parent's decision, else the request's route (already
    /// found when `route` is given).
    fn parent_or_root(&self, input: &Input<'_>, route: Option<RouteId>, now: Instant) -> Decision {
        if let Some(sampled) = input.parent {
            return Decision {
                sampled,
                reason: Reason::Parent,
                threshold: None,
            };
        }
        let id = route.unwrap_or_else(|| self.route_of(input));
        let (reason, reservoir) = match self.rules.get(id) {
            Some(rule) => (Reason::Rule, rule.reservoir.as_ref()),
            None => (Reason::Default, self.default_reservoir.as_ref()),
        };
        let decision = if reservoir.is_some_and(|r| r.try_take(self.nanos(now))) {
            Decision::forced(reason)
        } else {
            let threshold = self.routes.decide_root(id, input.trace_id);
            Decision {
                sampled: threshold.is_some(),
                reason,
                threshold,
            }
        };
        self.routes.count_root(id, decision.sampled);
        decision
    }

    /// The index (in `sampling.rules`) of the rule a root request would be
    /// decided by: the first whose every criterion holds, as [`Self::decide`]
    /// picks it.
    pub fn rule_for(&self, input: &Input<'_>) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(input))
    }

    /// The routes this sampler decides with.
    pub fn routes(&self) -> &std::sync::Arc<Routes> {
        &self.routes
    }

    /// The route a request belongs to, root or not: the first rule whose every
    /// criterion holds, else the default route.
    pub fn route_of(&self, input: &Input<'_>) -> RouteId {
        self.rule_for(input).unwrap_or(self.rules.len())
    }

    /// `now` on the token buckets' clock.
    fn nanos(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }
}

// === impl Decision ===

impl Decision {
    /// Sampled regardless of probability: no threshold to propagate.
    fn forced(reason: Reason) -> Self {
        Self {
            sampled: true,
            reason,
            threshold: None,
        }
    }

    /// Sampled iff `threshold` accepts the trace's randomness.
    fn by_probability(threshold: Option<Threshold>, input: &Input<'_>, reason: Reason) -> Self {
        let rv = randomness(input.trace_id);
        let threshold = threshold.filter(|t| t.accepts(rv));
        Self {
            sampled: threshold.is_some(),
            reason,
            threshold,
        }
    }
}

// === impl Reason ===

impl Reason {
    /// Every reason, for registering metric label values up front.
    pub const ALL: [Reason; 11] = [
        Reason::Parent,
        Reason::ForceSignal,
        Reason::ForcedTenant,
        Reason::ForcedWorkload,
        Reason::BudgetExceeded,
        Reason::Rule,
        Reason::Default,
        Reason::TailError,
        Reason::TailSlow,
        Reason::Boost,
        Reason::Probe,
    ];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Parent => "parent",
            Reason::ForceSignal => "force_signal",
            Reason::ForcedTenant => "forced_tenant",
            Reason::ForcedWorkload => "forced_workload",
            Reason::BudgetExceeded => "budget_exceeded",
            Reason::Rule => "rule",
            Reason::Default => "default",
            Reason::TailError => "tail_error",
            Reason::TailSlow => "tail_slow",
            Reason::Boost => "boost",
            Reason::Probe => "probe",
        }
    }
}

#[cfg(test)]
mod tests;
