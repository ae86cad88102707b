//! Knowing when a proxy process is ready, and on which ports: it logs
//! `sidecar ready inbound=<addr> outbound=<addr> admin=<addr>` once every
//! listener is bound.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::process::Child;

use super::Output;

/// How long the process has to bind its listeners and say so.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// The bound addresses, in the order inbound, outbound, admin.
pub(super) type Addrs = (SocketAddr, SocketAddr, SocketAddr);

/// Waits for the ready line and parses the bound addresses from it.
pub(super) async fn ready(child: &mut Child, output: &Output) -> Addrs {
    let is_ready = |line: &str| line.contains("sidecar ready");
    let first = async {
        tokio::select! {
            line = output.first(&is_ready) => Ok(line),
            status = child.wait() => Err(status),
        }
    };
    let line = match tokio::time::timeout(READY_LIMIT, first).await {
        Ok(Ok(line)) => line,
        Ok(Err(status)) => panic!(
            "the proxy exited ({}) before it was ready; its output:\n{}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            output.text()
        ),
        Err(_) => panic!(
            "the proxy did not log `sidecar ready` within {READY_LIMIT:?}; its output:\n{}",
            output.text()
        ),
    };
    let line = line.unwrap_or_else(|| {
        panic!(
            "the proxy closed its output before it was ready:\n{}",
            output.text()
        )
    });
    parse_ready(&line).unwrap_or_else(|| panic!("cannot read the listener addresses from {line:?}"))
}

/// The three addresses of a `sidecar ready inbound=… outbound=… admin=…` line,
/// whether logged as text or as JSON.
fn parse_ready(line: &str) -> Option<Addrs> {
    let field = |key: &str| -> Option<SocketAddr> {
        let start = line.find(&format!("{key}="))? + key.len() + 1;
        let value: String = line[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | ',' | '}'))
            .collect();
        value.parse().ok()
    };
    Some((field("inbound")?, field("outbound")?, field("admin")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_read_from_text_and_json_logs() {
        let addrs = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let expected = Some((addrs(1), addrs(2), addrs(3)));
        let text = "2025-01-01T00:00:00Z  INFO meshtrace_proxy: sidecar ready inbound=127.0.0.1:1 outbound=127.0.0.1:2 admin=127.0.0.1:3";
        assert_eq!(parse_ready(text), expected);
        let json = r#"{"fields":{"message":"sidecar ready inbound=127.0.0.1:1 outbound=127.0.0.1:2 admin=127.0.0.1:3"}}"#;
        assert_eq!(parse_ready(json), expected);
        assert_eq!(parse_ready("sidecar ready inbound=127.0.0.1:1"), None);
    }
}
