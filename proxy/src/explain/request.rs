//! The request `explain` is asked about: flags and a headers file turned into
//! the `http::Request` a listener would see.

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{Method, Request};

use crate::propagation::extract::Formats;
use crate::propagation::Format;
use crate::target::Direction;

/// One request to explain.
#[derive(Clone, Debug)]
pub struct Query {
    /// The listener it arrives on.
    pub direction: Direction,
    /// The request method.
    pub method: Method,
    /// `host[:port]`, sent as `Host`.
    pub authority: String,
    /// The request target (path and query).
    pub path: String,
    /// The request's headers, as sent (without `Host`).
    pub headers: HeaderMap,
    /// Formats the local app is taken to have sent lately (simulating what a
    /// running sidecar learned); `None`: nothing learned.
    pub app_sends: Option<Formats>,
}

impl Query {
    /// The request a listener would see: `Host` from the authority, then the
    /// headers in their order.
    pub fn request(&self) -> Result<Request<()>, String> {
        if !self.path.starts_with('/') {
            return Err(format!("--path {:?} must start with /", self.path));
        }
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .body(())
            .map_err(|e| format!("--path {:?}: {e}", self.path))?;
        let host = HeaderValue::from_str(&self.authority)
            .map_err(|_| format!("--authority {:?} is not a header value", self.authority))?;
        req.headers_mut().insert(HOST, host);
        for (name, value) in &self.headers {
            req.headers_mut().append(name.clone(), value.clone());
        }
        Ok(req)
    }
}

/// Parses one `name: value` line (a `-H` flag or a line of a headers file).
pub fn header_line(line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("header {line:?} is not `name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("header name {:?} is not a valid name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("header {name} has a value that is not visible ASCII"))?;
    Ok((name, value))
}

/// What a headers file holds: one `name: value` per line, or an HTTP request
/// head (its request line sets method and path), or `curl -v` output (only
/// `> ` lines are read). Blank lines and `#` comments are skipped.
#[derive(Debug, Default)]
pub struct HeadersFile {
    /// `(method, target)` from a request line, if there was one.
    pub request_line: Option<(String, String)>,
    /// The headers, in order (`Host` included when present).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Parses a headers file's text.
pub fn headers_file(text: &str) -> Result<HeadersFile, String> {
    let curl = text.lines().any(|l| l.starts_with("> "));
    let mut file = HeadersFile::default();
    for (n, raw) in text.lines().enumerate() {
        let line = match (curl, raw.strip_prefix('>')) {
            (true, Some(rest)) => rest.trim(),
            (true, None) => continue,
            (false, _) => raw.trim(),
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((method, target)) = request_line(line) {
            if file.request_line.is_none() && file.headers.is_empty() {
                file.request_line = Some((method, target));
                continue;
            }
        }
        let header = header_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        file.headers.push(header);
    }
    Ok(file)
}

/// `GET /path HTTP/1.1` as `(method, target)`.
fn request_line(line: &str) -> Option<(String, String)> {
    let mut parts = line.split_ascii_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && version.starts_with("HTTP/") && !method.ends_with(':'))
        .then(|| (method.to_string(), target.to_string()))
}

/// A format by its config name (`tracecontext`, `b3multi`, …).
pub fn format(name: &str) -> Result<Format, String> {
    Format::ALL
        .into_iter()
        .find(|f| f.as_str() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            format!(
                "unknown format {name:?}, expected one of {}",
                names.join(", ")
            )
        })
}

/// A direction by name.
pub fn direction(name: &str) -> Result<Direction, String> {
    match name {
        "inbound" => Ok(Direction::Inbound),
        "outbound" => Ok(Direction::Outbound),
        _ => Err("expected inbound or outbound".into()),
    }
}
