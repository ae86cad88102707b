//! One case of the `extract_normalise_inject` benchmark in a loop, for
//! instruction counts under callgrind — the per-request cost without timer
//! noise:
//!
//! ```sh
//! cargo build --release -p meshtrace-benches --example ownership_loop
//! valgrind --tool=callgrind --toggle-collect='*extract_normalise_inject*' \
//!     target/release/examples/ownership_loop datadog 10000
//! ```
//!
//! (the instructions collected divided by the count given).

use meshtrace_benches::propagation::{cases, extract_normalise_inject};
use meshtrace_config::Propagation;
use meshtrace_proxy::propagation::extract::{Extractor, Formats};
use meshtrace_proxy::propagation::inject::Injector;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let defaults = Propagation::default();
    let extractor = Extractor::new(defaults.extract.clone(), defaults.on_conflict);
    let injector = Injector::inbound(&defaults);
    let Some((_, format, template)) = cases().into_iter().find(|(name, ..)| *name == case) else {
        let names: Vec<&str> = cases().iter().map(|(name, ..)| *name).collect();
        eprintln!("usage: ownership_loop CASE [COUNT]; CASE is one of {names:?}");
        std::process::exit(2);
    };
    let app = Formats::only(format);
    let mut sum = 0u64;
    for _ in 0..n {
        let mut headers = template.clone();
        let span = extract_normalise_inject(&extractor, &injector, app, &mut headers);
        sum = sum.wrapping_add(span.get());
    }
    println!("{sum}");
}
