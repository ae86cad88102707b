//! meshtrace's end-to-end suite, as one test binary.
//!
//! Each module was once a test target of its own, and each linked its own copy of
//! the proxy, the control plane, tonic and hyper: some 200 MB and a link step per
//! file, for every file touched. As modules of one target the suite links once,
//! as linkerd2-proxy's integration crate does. A test's path still names its old
//! file: `cargo test -p meshtrace-tests --test e2e http1::` runs what
//! `--test http1` did.
//!
//! Nothing here depended on a process of its own: no test sets environment
//! variables in-process, per-process statics (the proxy binary located and
//! built once, temporary-file counters) are shared safely, scratch files are
//! named by test as well as by pid, and the transparent-mode test lives in a
//! network namespace of its own. Processes a test starts are killed when their
//! handles drop, so a failing test leaves none behind for the others.

#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod apps;
mod boost;
mod boosts_off;
mod chart;
mod cli;
mod control;
mod control_push;
mod control_replicas;
mod dashboards;
mod drain;
mod edge_errors;
mod explain;
mod fleet_sampling;
mod grpc;
mod harness;
mod http1;
mod http2;
mod idle;
mod image;
mod init;
mod injector;
mod interop;
mod large_bodies;
mod link_layout;
mod memory;
mod mixed_fleet;
mod opaque_tcp;
mod otlp_harness;
mod overrides;
mod page;
mod pod;
mod propagation;
mod python_app;
mod reload;
mod sampling;
mod spans;
mod structure_reload;
mod transparent;
mod watched;
mod websocket;
