//! Knowing when a proxy process is ready, and on which ports. The ports are
//! ephemeral, so only the process knows them: it announces them once bound, in
//! `sidecar ready inbound=<addr> outbound=<addr> admin=<addr>`. Readiness itself
//! is what the kubelet would ask: the admin `/ready` endpoint answering 200.

use std::net::SocketAddr;
use std::time::Duration;

use super::Supervised;

/// How long the process has to bind its listeners and become ready.
pub(crate) const READY_LIMIT: Duration = Duration::from_secs(20);

/// The bound addresses, in the order inbound, outbound, admin.
pub(super) type Addrs = (SocketAddr, SocketAddr, SocketAddr);

/// Waits for the announced addresses, then for admin `/ready`; panics with the
/// proxy's output if it exits or stays silent instead.
pub(super) async fn ready(proxy: &mut Supervised) -> Addrs {
    let addrs = announced(proxy).await;
    proxy
        .ready(addrs.2, "/ready", READY_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    addrs
}

/// The addresses the proxy announces once every listener is bound (and its
/// ready flag set).
pub(super) async fn announced(proxy: &Supervised) -> Addrs {
    let line = proxy
        .announced("its listeners", READY_LIMIT, |line| {
            line.contains("sidecar ready")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
