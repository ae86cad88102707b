//! meshtrace benchmarks: criterion micro-benchmarks (`benches/*.rs`) and the load
//! harness (`load/`), with its minimal backend (`src/bin/backend.rs`).

#![forbid(unsafe_code)]

pub mod propagation;
