//! The control plane over HTTP and from its CLI, as one test binary (it links
//! once, which keeps the suite's build time and disk down).

mod adaptive;
mod api;
mod cli;
mod fanout;
mod identity;
mod inject;
mod migration;
mod override_changes;
mod overrides;
mod page;
mod redact;
mod reload;
mod timeouts;
