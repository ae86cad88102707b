//! What the local app speaks, learned from its own outbound requests.
//!
//! An app instrumented with a B3 tracer reads B3 and nothing else: if the sidecar
//! wrote only W3C toward it, the app would start a new trace. So the outbound
//! listener notes which trace formats the app puts on its own requests, and the
//! inbound listener writes those formats (plus W3C and what arrived) toward it.
//!
//! - A format is remembered for `propagation.learn_for` (default 1 h) after the
//!   app last sent it: an app migrated to W3C stops getting its old format an
//!   hour later, while an app that calls out only now and then keeps it.
//! - Until the app has sent any request in that time, nothing is known and the
//!   caller writes every format toward it (a cold pod must not break its first
//!   traces); once it has sent requests without any context, it is known to
//!   speak none.
//! - `propagation.app_formats` replaces the learned set when an operator wants
//!   certainty.
//!
//! The state is one atomic "last seen" second per format, shared by both
//! listeners and kept across reloads. Observing writes a slot at most once a
//! second, so the outbound path does not bounce a cache line per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::extract::Formats;
use super::Format;

/// Slot of "any outbound request", after the formats' slots.
const ANY: usize = Format::ALL.len();

/// The formats the app has been seen sending.
#[derive(Debug)]
pub struct AppFormats {
    epoch: Instant,
    /// Per format (then [`ANY`]): seconds since `epoch` plus one when last seen;
    /// zero for never.
    last_seen: [AtomicU64; ANY + 1],
}

impl Default for AppFormats {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

// === impl AppFormats ===

impl AppFormats {
    /// Nothing learned yet; time counts from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            last_seen: Default::default(),
        }
    }

    /// Notes an outbound request from the app carrying `formats`.
    pub fn observe(&self, formats: Formats, now: Instant) {
        let stamp = self.stamp(now);
        let touch = |slot: &AtomicU64| {
            if slot.load(Ordering::Relaxed) != stamp {
                slot.store(stamp, Ordering::Relaxed);
            }
        };
        touch(&self.last_seen[ANY]);
        for format in formats.iter() {
            touch(&self.last_seen[format as usize]);
        }
    }

    /// The formats the app sent within `keep` before `now`; `None` when it sent
    /// no request at all in that time.
    pub fn get(&self, now: Instant, keep: Duration) -> Option<Formats> {
        let fresh = self.fresh_since(now, keep);
        if !fresh(&self.last_seen[ANY]) {
            return None;
        }
        Some(
            Format::ALL
                .into_iter()
                .filter(|f| fresh(&self.last_seen[*f as usize]))
                .collect(),
        )
    }

    /// [`get`](Self::get) with, per format, the whole seconds since it was last
    /// seen: for reports to the control plane.
    pub fn ages(&self, now: Instant, keep: Duration) -> Option<BTreeMap<Format, u64>> {
        let formats = self.get(now, keep)?;
        let now = self.stamp(now);
        Some(
            formats
                .iter()
                .map(|f| {
                    let seen = self.last_seen[f as usize].load(Ordering::Relaxed);
                    (f, now.saturating_sub(seen))
                })
                .collect(),
        )
    }

    fn fresh_since(&self, now: Instant, keep: Duration) -> impl Fn(&AtomicU64) -> bool {
        let oldest = self.stamp(now).saturating_sub(keep.as_secs());
        move |slot| {
            let seen = slot.load(Ordering::Relaxed);
            seen != 0 && seen >= oldest
        }
    }

    /// Seconds since the epoch, plus one so that zero means "never".
    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn formats(list: &[Format]) -> Formats {
        list.iter().copied().collect()
    }

    #[test]
    fn nothing_is_known_before_the_app_sends_a_request() {
        let t0 = Instant::now();
        assert_eq!(AppFormats::new(t0).get(t0, HOUR), None);
    }

    #[test]
    fn an_app_that_sends_no_context_is_known_to_speak_none() {
        let t0 = Instant::now();
        let app = AppFormats::new(t0);
        app.observe(Formats::default(), t0);
        assert_eq!(app.get(t0, HOUR), Some(Formats::default()));
    }

    #[test]
    fn formats_sent_are_learned_and_accumulate() {
        let t0 = Instant::now();
        let app = AppFormats::new(t0);
        app.observe(formats(&[Format::B3Multi]), t0);
        app.observe(formats(&[Format::Datadog, Format::TraceContext]), t0);
        assert_eq!(
            app.get(t0, HOUR),
            Some(formats(&[
                Format::B3Multi,
                Format::Datadog,
                Format::TraceContext
            ]))
        );
    }

    #[test]
    fn a_format_not_sent_for_learn_for_is_forgotten() {
        let t0 = Instant::now();
        let app = AppFormats::new(t0);
        app.observe(formats(&[Format::B3Multi]), t0);
        let later = t0 + HOUR;
        app.observe(formats(&[Format::TraceContext]), later);
        assert_eq!(
            app.get(later, HOUR),
            Some(formats(&[Format::B3Multi, Format::TraceContext])),
            "exactly learn_for after: still kept"
        );
        let after = later + Duration::from_secs(1);
        assert_eq!(app.get(after, HOUR), Some(formats(&[Format::TraceContext])));
        assert_eq!(
            app.get(after + HOUR, HOUR),
            None,
            "no request at all for an hour"
        );
    }

    #[test]
    fn ages_count_whole_seconds_since_last_seen() {
        let t0 = Instant::now();
        let app = AppFormats::new(t0);
        app.observe(formats(&[Format::B3Multi]), t0);
        app.observe(formats(&[Format::Datadog]), t0 + Duration::from_secs(30));
        let ages = app.ages(t0 + Duration::from_secs(40), HOUR).unwrap();
        assert_eq!(ages[&Format::B3Multi], 40);
        assert_eq!(ages[&Format::Datadog], 10);
    }
}
