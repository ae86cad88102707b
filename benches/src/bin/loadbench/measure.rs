//! One measured window per call: the tool's figures plus the target's CPU time
//! (utime + stime of its process group over the window ÷ requests completed), its
//! memory, and — for the exporting sidecars — the span counters' deltas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::procs::{group_usage, http_get};
use super::targets::{Stack, Target};
use super::tools::{self, Latency, Throughput};
use super::Error;

/// What one throughput window measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    /// The load generator's figures.
    pub load: Throughput,
    /// The target's CPU per completed request, µs (none for direct).
    pub cpu_us: Option<f64>,
    /// Span counter deltas over the window (meshtrace targets).
    pub spans: Option<Spans>,
}

/// An open-loop latency window.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatencyWindow {
    /// oha's figures.
    pub latency: Latency,
    /// Span counter deltas over the window (meshtrace targets).
    pub spans: Option<Spans>,
}

/// A sidecar's request and span counters (`/metrics`), or their deltas.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spans {
    /// `meshtrace_requests_total{direction="inbound"}`, summed.
    pub requests: u64,
    /// `meshtrace_spans_exported_total`.
    pub exported: u64,
    /// `meshtrace_spans_dropped_total`, every reason.
    pub dropped: u64,
}

// === impl Spans ===

impl Spans {
    /// Reads the counters from a sidecar's admin `/metrics`.
    pub fn read(admin: SocketAddr) -> Result<Self, Error> {
        let (status, body) = http_get(admin, "/metrics")?;
        if status != 200 {
            return Err(format!("GET http://{admin}/metrics: status {status}").into());
        }
        let mut spans = Spans::default();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            let value = value as u64;
            if line.starts_with("meshtrace_spans_exported_total") {
                spans.exported += value;
            } else if line.starts_with("meshtrace_spans_dropped_total") {
                spans.dropped += value;
            } else if line.starts_with("meshtrace_requests_total{")
                && line.contains("direction=\"inbound\"")
            {
                spans.requests += value;
            }
        }
        Ok(spans)
    }

    /// Reads traced Envoy's counters from its admin `/stats` (with curl: Envoy's
    /// admin answers HTTP/1.0 with 426, and HTTP/1.1 may be chunked).
    pub fn read_envoy(admin: SocketAddr) -> Result<Self, Error> {
        let url = format!("http://{admin}/stats");
        let out = std::process::Command::new("curl")
            .args(["-sf", "-m", "3", &url])
            .output()
            .map_err(|e| format!("curl {url}: {e}"))?;
        if !out.status.success() {
            return Err(format!("curl {url}: {}", out.status).into());
        }
        Ok(Self::parse_envoy(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Envoy's text stats: requests completed on the h1 and h2c listeners'
    /// connection managers, `tracing.opentelemetry.spans_sent` and `…spans_dropped`.
    fn parse_envoy(body: &str) -> Self {
        let mut spans = Spans::default();
        for line in body.lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            match name {
                "http.h1.downstream_rq_completed" | "http.h2c.downstream_rq_completed" => {
                    spans.requests += value;
                }
                "tracing.opentelemetry.spans_sent" => spans.exported += value,
                "tracing.opentelemetry.spans_dropped" => spans.dropped += value,
                _ => {}
            }
        }
        spans
    }

    fn since(self, before: Spans) -> Spans {
        Spans {
            requests: self.requests.saturating_sub(before.requests),
            exported: self.exported.saturating_sub(before.exported),
            dropped: self.dropped.saturating_sub(before.dropped),
        }
    }
}

/// Takes the measurements around load windows.
#[derive(Debug)]
pub struct Meter<'a> {
    /// The running targets.
    pub stack: &'a mut Stack,
    /// Where tool output goes.
    pub dir: &'a Path,
    /// Microseconds per clock tick.
    pub tick_us: f64,
}

// === impl Meter ===

impl Meter<'_> {
    fn spans(&self, target: Target) -> Result<Option<Spans>, Error> {
        if target == Target::EnvoyTraced {
            return self
                .stack
                .envoy_admin(target)
                .map(Spans::read_envoy)
                .transpose();
        }
        self.stack.admin(target).map(Spans::read).transpose()
    }

    fn ticks(&self, pgid: Option<u32>) -> Option<u64> {
        pgid.map(|p| group_usage(p).ticks)
    }

    fn cpu_us(&self, before: Option<u64>, after: Option<u64>, requests: u64) -> Option<f64> {
        match (before, after) {
            (Some(b), Some(a)) if requests > 0 => {
                Some(a.saturating_sub(b) as f64 * self.tick_us / requests as f64)
            }
            _ => None,
        }
    }

    /// A throughput window around `run`, accounting `pgid`'s CPU and `target`'s spans.
    fn window(
        &mut self,
        target: Target,
        pgid: Option<u32>,
        run: impl FnOnce(&Self) -> Result<Throughput, Error>,
    ) -> Result<Window, Error> {
        self.stack.check_alive()?;
        let spans0 = self.spans(target)?;
        let cpu0 = self.ticks(pgid);
        let load = run(self)?;
        let cpu1 = self.ticks(pgid);
        let spans1 = self.spans(target)?;
        Ok(Window {
            load,
            cpu_us: self.cpu_us(cpu0, cpu1, load.requests),
            spans: spans1.zip(spans0).map(|(a, b)| a.since(b)),
        })
    }

    /// wrk `-t1 -c32` on the target's HTTP/1.1 listener.
    pub fn wrk(&mut self, target: Target, secs: u32) -> Result<Window, Error> {
        let (url, pgid) = (self.stack.h1_url(target), self.stack.pgid(target));
        self.window(target, pgid, |m| tools::wrk(&url, 32, secs, m.dir, || {}))
    }

    /// h2load `-c32 -m10` on the target's h2c listener.
    pub fn h2load(&mut self, target: Target, secs: u32) -> Result<Window, Error> {
        let (url, pgid) = (self.stack.h2_url(target), self.stack.pgid(target));
        self.window(target, pgid, |m| tools::h2load(&url, secs, m.dir))
    }

    /// gRPC unary, closed loop, 32 in flight: to the server, or through the
    /// gRPC sidecar.
    pub fn grpc(&mut self, through_sidecar: bool, bin: &Path, secs: u32) -> Result<Window, Error> {
        let (direct, sidecar) = self.stack.grpc_urls();
        let (url, pgid) = if through_sidecar {
            (sidecar, Some(self.stack.grpc_sidecar_pgid()))
        } else {
            (direct, None)
        };
        let bin = bin.join("grpc-bench");
        self.window(Target::Direct, pgid, |m| {
            tools::grpc(&bin, &url, secs, m.dir)
        })
    }

    /// oha at `rate` requests/s, open loop, on the target's HTTP/1.1 listener.
    pub fn oha(&mut self, target: Target, rate: u32, secs: u32) -> Result<LatencyWindow, Error> {
        self.stack.check_alive()?;
        let url = self.stack.h1_url(target);
        let spans0 = self.spans(target)?;
        let latency = tools::oha(&url, rate, secs, self.dir)?;
        let spans1 = self.spans(target)?;
        Ok(LatencyWindow {
            latency,
            spans: spans1.zip(spans0).map(|(a, b)| a.since(b)),
        })
    }

    /// A wrk `-c100` window on a proxy, sampling its RSS about every 250 ms;
    /// returns the largest sample, KiB. With `watch`, the proxy's RSS is then
    /// followed for 30 s (while the next windows run), and every proxy `watch`
    /// already follows is sampled meanwhile.
    pub fn rss_under_load(
        &mut self,
        target: Target,
        secs: u32,
        mut watch: Option<&mut Watch>,
    ) -> Result<u64, Error> {
        self.stack.check_alive()?;
        let Some(pgid) = self.stack.pgid(target) else {
            return Err(format!("{} has no process to measure", target.label()).into());
        };
        let url = self.stack.h1_url(target);
        let mut peak = group_usage(pgid).rss_kib;
        let mut last = Instant::now();
        tools::wrk(&url, 100, secs, self.dir, || {
            if last.elapsed() >= Duration::from_millis(250) {
                peak = peak.max(group_usage(pgid).rss_kib);
                last = Instant::now();
            }
            if let Some(w) = watch.as_deref_mut() {
                w.poll();
            }
        })?;
        peak = peak.max(group_usage(pgid).rss_kib);
        if let Some(w) = watch {
            w.follow(target, pgid);
        }
        Ok(peak)
    }

    /// Every target's RSS now, KiB.
    pub fn rss(&self, targets: &[Target]) -> BTreeMap<Target, u64> {
        targets
            .iter()
            .filter_map(|&t| self.stack.pgid(t).map(|p| (t, group_usage(p).rss_kib)))
            .collect()
    }

    /// Waits (at most 8 s, more than the exports' 5 s batch delay) until the
    /// 100% sidecar has exported or dropped a span for every request and traced
    /// Envoy's sink has a span for every request, then reads every exporting
    /// sidecar's counters since it started, and Envoy's (exported = what its
    /// sink received; dropped = requests without a span there).
    pub fn settle(&self, sampled: &[Target]) -> Result<BTreeMap<Target, Spans>, Error> {
        let deadline = Instant::now() + Duration::from_secs(8);
        let envoy = || -> Result<Option<Spans>, Error> {
            let Some(s) = self.spans(Target::EnvoyTraced)? else {
                return Ok(None);
            };
            let sink = self.stack.envoy_sink_spans().unwrap_or(0);
            Ok(Some(Spans {
                requests: s.requests,
                exported: sink,
                dropped: s.requests.saturating_sub(sink).max(s.dropped),
            }))
        };
        if let Some(admin) = self.stack.admin(Target::Sampled100) {
            while Instant::now() < deadline {
                let s = Spans::read(admin)?;
                let e = envoy()?.unwrap_or_default();
                if s.exported + s.dropped >= s.requests && e.exported >= e.requests {
                    break;
                }
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the load harness drives its tools synchronously, outside any runtime"
                )]
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let mut totals = BTreeMap::new();
        for &t in sampled {
            if let Some(s) = self.spans(t)? {
                totals.insert(t, s);
            }
        }
        if let Some(e) = envoy()? {
            totals.insert(Target::EnvoyTraced, e);
        }
        Ok(totals)
    }
}

/// How long a proxy's RSS is followed after its load.
pub const RECOVERY: Duration = Duration::from_secs(30);

/// A proxy's RSS after a load: (seconds since the load ended, KiB), about every
/// second from 0 to [`RECOVERY`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// The samples, oldest first.
    pub samples: Vec<(f64, u64)>,
}

// === impl Recovery ===

impl Recovery {
    /// The last sample: the RSS [`RECOVERY`] after the load.
    pub fn at_end(&self) -> Option<u64> {
        self.samples.last().map(|s| s.1)
    }

    /// The first time, in seconds after the load, the RSS was at most `limit_kib`.
    pub fn first_within(&self, limit_kib: f64) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.1 as f64 <= limit_kib)
            .map(|s| s.0)
    }
}

/// Proxies whose RSS is being followed after their load.
#[derive(Debug, Default)]
pub struct Watch {
    pending: Vec<(Target, u32, Instant, Duration, Recovery)>,
    /// The finished followings.
    pub done: BTreeMap<Target, Recovery>,
}

// === impl Watch ===

impl Watch {
    /// Starts following `target` (process group `pgid`), its load just ended.
    pub fn follow(&mut self, target: Target, pgid: u32) {
        self.pending.push((
            target,
            pgid,
            Instant::now(),
            Duration::ZERO,
            Recovery::default(),
        ));
        self.poll();
    }

    /// Takes every sample that is due.
    pub fn poll(&mut self) {
        for (_, pgid, end, next, rec) in &mut self.pending {
            let elapsed = end.elapsed();
            if elapsed >= *next {
                rec.samples
                    .push((elapsed.as_secs_f64(), group_usage(*pgid).rss_kib));
                *next += Duration::from_secs(1);
            }
        }
        let (finished, pending) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.3 > RECOVERY);
        self.pending = pending;
        for (target, _, _, _, rec) in finished {
            self.done.insert(target, rec);
        }
    }

    /// Waits until every proxy has been followed for [`RECOVERY`].
    pub fn finish(&mut self) {
        while !self.pending.is_empty() {
            self.poll();
            #[allow(
                clippy::disallowed_methods,
                reason = "the load harness drives its tools synchronously, outside any runtime"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_stats_give_requests_and_spans() {
        let body = "cluster.otlp.upstream_rq_total: 95\n\
                    http.admin.downstream_rq_completed: 1\n\
                    http.h1.downstream_rq_completed: 42691\n\
                    http.h2c.downstream_rq_completed: 5470\n\
                    listener.127.0.0.1_19902.http.h1.downstream_rq_completed: 42691\n\
                    tracing.opentelemetry.spans_dropped: 3\n\
                    tracing.opentelemetry.spans_sent: 48158\n\
                    tracing.opentelemetry.timer_flushed: 4\n\
                    cluster.app_h1.upstream_cx_rx_bytes_buffered: P0(nan,0)\n";
        let s = Spans::parse_envoy(body);
        assert_eq!((s.requests, s.exported, s.dropped), (48161, 48158, 3));
    }

    #[test]
    fn recovery_reports_the_last_sample_and_the_first_within_a_limit() {
        let r = Recovery {
            samples: vec![(0.0, 20_000), (1.0, 15_000), (2.0, 11_000), (30.0, 10_500)],
        };
        assert_eq!(r.at_end(), Some(10_500));
        assert_eq!(r.first_within(12_000.0), Some(2.0));
        assert_eq!(r.first_within(10_000.0), None);
    }
}
