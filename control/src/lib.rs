//! meshtrace control plane: holds the sidecar configuration and pushes it, versioned,
//! to every connected sidecar.
//!
//! # Model
//!
//! * **Source of truth**: a YAML document (a mounted ConfigMap) of `defaults` plus
//!   per-workload `workloads` sections ([`document`]). The file is polled every
//!   ~500 ms ([`source`] explains why polling); a changed file is validated and, if
//!   invalid, rejected with its error kept for `/v1/status` while the last good
//!   document keeps serving.
//! * **API writes**: `PUT`/`PATCH /v1/config/base` replace the document; the result
//!   is persisted and wins until the source file changes again — *last writer
//!   wins*. Incident overrides ([`overrides`]) change sampling until they expire;
//!   they can be changed in place and extended, up to `--max-override-duration`.
//!   Migration stage moves ([`stages`]) set one workload's `propagation.stage`.
//! * **Resolution** ([`resolve`]): defaults → matching sections in order → stage
//!   assignments → embedded sidecar defaults → validation → *every* active override
//!   that concerns the workload (unscoped before namespace-scoped, then creation
//!   order) → validation, per workload.
//! * **Push** ([`watch`]): every effective change gets a global version derived
//!   from the state's content ([`version`]: the same state has the same version
//!   on every replica and after a restart; versions are compared for equality,
//!   not ordered); each sidecar's SSE stream sends its workload's full config
//!   whenever *that* config changed. Sidecars ACK/NACK by `POST /v1/ack`.
//! * **Reports** ([`reports`], [`migration`]): sidecars `POST /v1/report` the
//!   trace-context formats they see; the server keeps a five-minute window per
//!   sidecar, in memory only (a restarted server rebuilds it within minutes), and
//!   `GET /v1/migration` shows, per workload, its stage and how much legacy
//!   traffic is left.
//! * **Page** ([`page`]): `GET /` is a read-only page for a browser showing the
//!   connected sidecars, the active overrides and the migration view, refreshed
//!   live from the open `GET /v1/*` endpoints.
//! * **Persistence** ([`state`]): overrides, stage assignments and API documents
//!   survive restarts, in a local file (`serve --store file`) or in a
//!   ConfigMap shared by any number of replicas (`serve --store kubernetes`),
//!   which follow each other's writes.
//! * **Offline check** ([`check`]): `meshtrace-control check FILE` runs the
//!   server's own loading code on a file, for CI and before a ConfigMap change.
//! * **Sidecar injection** ([`inject`]): `meshtrace-control injector`, a mutating
//!   admission webhook adding the init step and the sidecar to pods, and
//!   `meshtrace-control inject`, the same code offline on a manifest.
//!
//! # Security
//!
//! Writes need a bearer token ([`auth`]); without one configured the API is
//! read-only. Reads, watch streams and ACKs are unauthenticated: they are meant for
//! sidecars inside the cluster, so expose the port only in-cluster and restrict it
//! with a NetworkPolicy. Config may contain export headers (collector API keys):
//! treat read access accordingly.
//!
//! Whoever reaches the port can open connections, so each has deadlines (first
//! byte, request head), an idle timeout that spares watches, and their number is
//! bounded below the open-files limit ([`server::ConnectionLimits`]).
//!
//! # Wire protocol
//!
//! See [`watch`] for the event stream and [`api`] for the routes.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::disallowed_methods)]
// Production code returns errors; tests may unwrap (clippy.toml `allow-*-in-tests`).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod auth;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod document;
pub mod inject;
pub mod merge;
pub mod migration;
pub mod overrides;
pub mod page;
pub mod reply;
pub mod reports;
pub mod resolve;
pub mod server;
pub mod sidecars;
pub mod source;
pub mod stages;
pub mod state;
pub mod store;
pub mod switches;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timestamp;
pub mod version;
pub mod watch;
pub mod workload;
