//! `meshtrace-proxy explain`: what the sidecar would do with a request, without
//! sending it — which trace headers it reads (per format: valid, invalid and
//! why), the merged context, the sampling decision and what made it, and
//! exactly which headers it writes and removes toward the next hop.
//!
//! It runs the request path's own trace step
//! ([`crate::http::trace::trace_request`]: extract, decide, inject, header
//! ownership) on the request, with a trace policy built as a listener builds it
//! ([`crate::stack::PolicyParts::policy`]), and reads the result; nothing is
//! re-implemented here. *Why* a codec rejected a header is the codec's own
//! answer ([`crate::propagation::Invalid`]: the spec rule the value breaks).
//! What depends on a running sidecar's state — spent budgets, the
//! formats the app was seen sending, random ids — is stated in the answer.

mod build;
mod model;
mod render;
mod request;
mod sampling;

use std::path::PathBuf;
use std::process::ExitCode;

use http::Method;
use meshtrace_config::Config;

pub use build::explain;
pub use model::Explanation;
pub use render::text;
pub use request::{headers_file, Query};

use crate::propagation::Format;
use crate::target::Direction;

/// The `explain` command's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ExplainArgs {
    /// Config file; without it, the embedded default (and MESHTRACE_CONFIG_YAML), as `run`.
    #[arg(long, short, env = "MESHTRACE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The listener the request arrives on: inbound (mesh → app) or outbound (app → mesh).
    #[arg(long, value_parser = request::direction)]
    pub direction: Direction,
    /// The request's `host[:port]` (sent as Host; outbound rules match it).
    #[arg(long)]
    pub authority: Option<String>,
    /// The request path [default: /, or a headers file's request line].
    #[arg(long)]
    pub path: Option<String>,
    /// The request method [default: GET, or a headers file's request line].
    #[arg(long)]
    pub method: Option<String>,
    /// A request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_parser = request::header_line)]
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// A file of headers: `name: value` per line, an HTTP request head, or `curl -v` output.
    #[arg(long)]
    pub headers_file: Option<PathBuf>,
    /// Formats the local app sends (what a running sidecar would have learned), comma-separated.
    #[arg(long, value_parser = request::format, value_delimiter = ',')]
    pub app_sends: Vec<Format>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `explain`: the answer on stdout (exit 0), or one line on stderr (exit 2).
pub fn run(args: &ExplainArgs) -> ExitCode {
    let answer = config(args)
        .and_then(|config| Ok((query(args)?, config)))
        .and_then(|(query, config)| explain(&config, &query));
    let explanation = match answer {
        Ok(explanation) => explanation,
        Err(error) => {
            eprintln!("explain: {}", error.lines().next().unwrap_or_default());
            return ExitCode::from(2);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&explanation) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("explain: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", text(&explanation));
    }
    ExitCode::SUCCESS
}

fn config(args: &ExplainArgs) -> Result<Config, String> {
    match &args.config {
        Some(path) => Config::from_file(path),
        None => Config::from_env_defaults(),
    }
    .map_err(|e| e.to_string().replace('\n', "; "))
}

/// The request from the flags, a headers file filling what they leave unset.
fn query(args: &ExplainArgs) -> Result<Query, String> {
    let file = match &args.headers_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--headers-file {}: {e}", path.display()))?;
            headers_file(&text).map_err(|e| format!("--headers-file {}: {e}", path.display()))?
        }
        None => request::HeadersFile::default(),
    };
    let mut headers = http::HeaderMap::new();
    let mut host = None;
    for (name, value) in file.headers.into_iter().chain(args.headers.iter().cloned()) {
        if name == http::header::HOST {
            host = value.to_str().ok().map(str::to_string);
        } else {
            headers.append(name, value);
        }
    }
    let (file_method, file_path) = file.request_line.unzip();
    let authority = args
        .authority
        .clone()
        .or(host)
        .ok_or("--authority is required (or a Host header)")?;
    let method = args
        .method
        .clone()
        .or(file_method)
        .unwrap_or_else(|| "GET".into());
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("--method {method:?} is not an HTTP method"))?;
    Ok(Query {
        direction: args.direction,
        method,
        authority,
        path: args
            .path
            .clone()
            .or(file_path)
            .unwrap_or_else(|| "/".into()),
        headers,
        app_sends: (!args.app_sends.is_empty()).then(|| args.app_sends.iter().copied().collect()),
    })
}

#[cfg(test)]
mod tests;
