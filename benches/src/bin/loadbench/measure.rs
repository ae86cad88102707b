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

    /// wrk `-t2 -c32` on the target's HTTP/1.1 listener.
    pub fn wrk(&mut self, target: Target, secs: u32) -> Result<Window, Error> {
        let (url, pgid) = (self.stack.h1_url(target), self.stack.pgid(target));
        self.window(target, pgid, |m| tools::wrk(&url, 32, secs, m.dir, || {}))
    }

    /// h2load `-c32 -m10 -t2` on the target's h2c listener.
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
    /// returns the largest sample and the RSS 2 s after the load ended, KiB.
    pub fn rss_under_load(&mut self, target: Target, secs: u32) -> Result<(u64, u64), Error> {
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
        })?;
        peak = peak.max(group_usage(pgid).rss_kib);
        #[allow(
            clippy::disallowed_methods,
            reason = "the load harness drives its tools synchronously, outside any runtime"
        )]
        std::thread::sleep(Duration::from_secs(2));
        Ok((peak, group_usage(pgid).rss_kib))
    }

    /// Every target's RSS now, KiB.
    pub fn rss(&self, targets: &[Target]) -> BTreeMap<Target, u64> {
        targets
            .iter()
            .filter_map(|&t| self.stack.pgid(t).map(|p| (t, group_usage(p).rss_kib)))
            .collect()
    }

    /// Waits (at most 8 s, more than the export's 5 s batch delay) until the
    /// 100% sidecar has exported or dropped a span for every request, then reads
    /// every exporting sidecar's counters since it started.
    pub fn settle(&self, sampled: &[Target]) -> Result<BTreeMap<Target, Spans>, Error> {
        let deadline = Instant::now() + Duration::from_secs(8);
        if let Some(admin) = self.stack.admin(Target::Sampled100) {
            while Instant::now() < deadline {
                let s = Spans::read(admin)?;
                if s.exported + s.dropped >= s.requests {
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
        Ok(totals)
    }
}
