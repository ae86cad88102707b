//! The pod's redirect rules as `iptables-restore` scripts: pure text from a
//! [`Plan`], so every rule is unit tested without root.
//!
//! The layout is istio-init's (`tools/istio-iptables`), in meshtrace's own chains
//! of the `nat` table:
//!
//! ```text
//! PREROUTING ─tcp→ MESHTRACE_INBOUND ─excluded port→ RETURN (health 15021, metrics 15020 always)
//!                                    └─────────────→ MESHTRACE_IN_REDIRECT → REDIRECT :15006
//! OUTPUT ─tcp→ MESHTRACE_OUTPUT
//!   sidecar (uid/gid) → own pod IP over lo → MESHTRACE_IN_REDIRECT   (hairpin: a call to
//!                                             the pod's own service is served inbound)
//!   app over lo                     → RETURN   (to itself or localhost: not the mesh)
//!   sidecar (uid/gid)               → RETURN   (its upstream connections)
//!   loopback destination            → RETURN
//!   excluded port / CIDR            → RETURN
//!   everything else                 → MESHTRACE_REDIRECT → REDIRECT :15001
//! ```
//!
//! Rules are written in the canonical form `iptables-save` prints them (`-p tcp
//! -m tcp --dport`, masked CIDRs), so the apply step can tell which jumps are
//! already installed by comparing lines, and a second run changes nothing.
//! Declaring a chain in `iptables-restore --noflush` flushes it if it exists, so
//! re-running rewrites meshtrace's chains in one atomic commit.

use super::plan::{Family, Plan};

/// meshtrace's chains in the `nat` table, in declaration order.
pub const CHAINS: [&str; 4] = [
    "MESHTRACE_INBOUND",
    "MESHTRACE_IN_REDIRECT",
    "MESHTRACE_OUTPUT",
    "MESHTRACE_REDIRECT",
];

/// The jumps from the built-in chains into meshtrace's: the only rules outside
/// meshtrace's chains, so the only ones that could be installed twice.
pub const JUMPS: [&str; 2] = [
    "-A PREROUTING -p tcp -j MESHTRACE_INBOUND",
    "-A OUTPUT -p tcp -j MESHTRACE_OUTPUT",
];

/// The script that installs `plan` for `family` on a table whose
/// `iptables-save -t nat` output is `current` (`""`: a fresh table). Jumps
/// already in `current` are left out; meshtrace's chains are rewritten whole.
pub fn install(plan: &Plan, family: Family, current: &str) -> String {
    let mut script = vec!["*nat".to_string()];
    script.extend(CHAINS.iter().map(|chain| format!(":{chain} - [0:0]")));
    script.extend(
        JUMPS
            .iter()
            .filter(|jump| !has_line(current, jump))
            .map(|jump| (*jump).to_string()),
    );
    script.extend(inbound(plan));
    script.extend(outbound(plan, family));
    script.push("COMMIT".into());
    lines(script)
}

/// The script that removes every meshtrace chain and every jump into one from
/// a table whose `iptables-save -t nat` output is `current`; `None` when there
/// is nothing to remove (an empty script would still be a valid no-op, but
/// saying "nothing to remove" is clearer).
pub fn remove(current: &str) -> Option<String> {
    let jumps: Vec<String> = current
        .lines()
        .filter_map(|line| line.strip_prefix("-A "))
        .filter(|rule| {
            (rule.starts_with("PREROUTING ") || rule.starts_with("OUTPUT "))
                && rule.contains(" -j MESHTRACE_")
        })
        .map(|rule| format!("-D {rule}"))
        .collect();
    let chains: Vec<&str> = CHAINS
        .iter()
        .copied()
        .filter(|chain| {
            current
                .lines()
                .any(|l| l.starts_with(&format!(":{chain} ")))
        })
        .collect();
    if jumps.is_empty() && chains.is_empty() {
        return None;
    }
    let mut script = vec!["*nat".to_string()];
    // Flush first: the chains refer to each other, and a referenced chain
    // cannot be deleted.
    script.extend(chains.iter().map(|chain| format!(":{chain} - [0:0]")));
    script.extend(jumps);
    script.extend(chains.iter().map(|chain| format!("-X {chain}")));
    script.push("COMMIT".into());
    Some(lines(script))
}

/// Inbound: every TCP port but the excluded ones goes to the inbound listener.
fn inbound(plan: &Plan) -> Vec<String> {
    let mut rules: Vec<String> = plan
        .exclude_inbound_ports
        .iter()
        .map(|port| format!("-A MESHTRACE_INBOUND -p tcp -m tcp --dport {port} -j RETURN"))
        .collect();
    rules.push("-A MESHTRACE_INBOUND -p tcp -j MESHTRACE_IN_REDIRECT".into());
    rules.push(format!(
        "-A MESHTRACE_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        plan.inbound_port
    ));
    rules
}

/// Outbound: the app's TCP goes to the outbound listener, except the sidecar's
/// own, loopback, and the excluded ports and CIDRs.
fn outbound(plan: &Plan, family: Family) -> Vec<String> {
    let loopback = family.loopback();
    let mut rules = Vec::new();
    for (owner, id) in [("uid", plan.proxy_uid), ("gid", plan.proxy_gid)] {
        rules.push(format!(
            "-A MESHTRACE_OUTPUT ! -d {loopback} -o lo -m owner --{owner}-owner {id} \
             -j MESHTRACE_IN_REDIRECT"
        ));
        rules.push(format!(
            "-A MESHTRACE_OUTPUT -o lo -m owner ! --{owner}-owner {id} -j RETURN"
        ));
        rules.push(format!(
            "-A MESHTRACE_OUTPUT -m owner --{owner}-owner {id} -j RETURN"
        ));
    }
    rules.push(format!("-A MESHTRACE_OUTPUT -d {loopback} -j RETURN"));
    rules.extend(
        plan.exclude_outbound_ports
            .iter()
            .map(|port| format!("-A MESHTRACE_OUTPUT -p tcp -m tcp --dport {port} -j RETURN")),
    );
    rules.extend(
        plan.exclude_outbound_cidrs
            .iter()
            .filter(|cidr| cidr.family() == family)
            .map(|cidr| format!("-A MESHTRACE_OUTPUT -d {cidr} -j RETURN")),
    );
    rules.push("-A MESHTRACE_OUTPUT -j MESHTRACE_REDIRECT".into());
    rules.push(format!(
        "-A MESHTRACE_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        plan.outbound_port
    ));
    rules
}

fn has_line(text: &str, wanted: &str) -> bool {
    text.lines().any(|line| line.trim_end() == wanted)
}

fn lines(script: Vec<String>) -> String {
    let mut text = script.join("\n");
    text.push('\n');
    text
}
