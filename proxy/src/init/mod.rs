//! `meshtrace-proxy init`: the pod's init step. It installs the `nat` rules that
//! send the app's outbound TCP to the sidecar's outbound listener (15001) and
//! the pod's inbound TCP to its inbound listener (15006), as istio-init and
//! linkerd-init do, for IPv4 and IPv6, then exits. The sidecar's own traffic
//! (uid/gid 1337) is exempt, so its upstream connections are not captured again.
//!
//! [`plan`] parses the flags into a typed [`Plan`]; [`rules`] turns a plan into
//! `iptables-restore` scripts (pure text, unit tested); [`apply`] reads what is
//! installed and applies the difference. Running it twice adds nothing;
//! `--remove` deletes every meshtrace chain and jump.

use std::process::ExitCode;

use clap::ValueEnum;

pub mod apply;
pub mod plan;
pub mod rules;
#[cfg(test)]
mod tests;

pub use plan::{
    Cidr, CidrList, Family, Plan, PortList, ALWAYS_EXCLUDED_INBOUND, HEALTH_PORT, METRICS_PORT,
};

use apply::ApplyError;

/// The flags of `meshtrace-proxy init` (the injector writes them from the pod's
/// annotations and its own config). Every list flag accepts an empty string.
#[derive(clap::Args, Clone, Debug)]
pub struct InitArgs {
    /// The sidecar's outbound listener port: the app's TCP is redirected there.
    #[arg(long, default_value_t = 15001, value_parser = clap::value_parser!(u16).range(1..))]
    pub outbound_port: u16,
    /// The sidecar's inbound listener port: the pod's inbound TCP is redirected there.
    #[arg(long, default_value_t = 15006, value_parser = clap::value_parser!(u16).range(1..))]
    pub inbound_port: u16,
    /// The sidecar's uid, whose connections are never redirected outbound.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// The sidecar's gid, exempt like its uid.
    #[arg(long, default_value_t = 1337)]
    pub proxy_gid: u32,
    /// Destination ports the app reaches directly (comma-separated).
    #[arg(long, default_value = "", value_name = "P,P")]
    pub exclude_outbound_ports: PortList,
    /// Pod ports reached directly from outside (comma-separated; 15021 and 15020 always are).
    #[arg(long, default_value = "", value_name = "P,P")]
    pub exclude_inbound_ports: PortList,
    /// Destinations the app reaches directly (comma-separated, IPv4 and IPv6 mixed).
    #[arg(long, default_value = "", value_name = "CIDR,CIDR")]
    pub exclude_outbound_cidrs: CidrList,
    /// Also write ip6tables rules: `auto` when the kernel has IPv6.
    #[arg(long, value_enum, default_value_t = Ipv6::Auto)]
    pub ipv6: Ipv6,
    /// Print the iptables-restore script(s) for a fresh pod; apply nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete the meshtrace chains and the jumps into them (uninstall).
    #[arg(long)]
    pub remove: bool,
}

/// Whether the IPv6 table gets rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ipv6 {
    /// When the kernel has IPv6 (`/proc/net/if_inet6` exists).
    Auto,
    /// Always; fails without ip6tables.
    On,
    /// Never.
    Off,
}

impl InitArgs {
    /// The plan these flags describe.
    pub fn plan(&self) -> Plan {
        Plan::new(
            (self.outbound_port, self.inbound_port),
            (self.proxy_uid, self.proxy_gid),
            &self.exclude_outbound_ports.0,
            &self.exclude_inbound_ports.0,
            &self.exclude_outbound_cidrs.0,
        )
    }

    /// The families to write, IPv4 first.
    fn families(&self) -> Vec<Family> {
        let v6 = match self.ipv6 {
            Ipv6::Auto => apply::kernel_has_ipv6(),
            Ipv6::On => true,
            Ipv6::Off => false,
        };
        std::iter::once(Family::V4)
            .chain(v6.then_some(Family::V6))
            .collect()
    }
}

/// Runs the init step, printing what it applied; a one-line error and a
/// non-zero status on failure.
pub fn run(args: &InitArgs) -> ExitCode {
    let result = if args.dry_run && !args.remove {
        dry_run(args);
        Ok(())
    } else {
        apply::check_capabilities().and_then(|()| apply_all(args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshtrace-proxy init: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the scripts a fresh pod would get.
fn dry_run(args: &InitArgs) {
    let plan = args.plan();
    for family in args.families() {
        let script = rules::install(&plan, family, "");
        say(&format!(
            "# {} (iptables-restore --noflush):\n{script}",
            family.name()
        ));
    }
}

/// Installs (or removes) the rules family by family, printing each script.
fn apply_all(args: &InitArgs) -> Result<(), ApplyError> {
    let plan = args.plan();
    for family in args.families() {
        let current = apply::current(family)?;
        let script = if args.remove {
            rules::remove(&current)
        } else {
            Some(rules::install(&plan, family, &current))
        };
        let Some(script) = script else {
            say(&format!(
                "# {}: no meshtrace rules to remove\n",
                family.name()
            ));
            continue;
        };
        let verb = match (args.remove, args.dry_run) {
            (_, true) => "would apply",
            (true, false) => "removed with",
            (false, false) => "applied",
        };
        if !args.dry_run {
            apply::restore(family, &script)?;
        }
        say(&format!(
            "# {} rules {verb} (iptables-restore --noflush):\n{script}",
            family.name()
        ));
    }
    Ok(())
}

/// Prints `text` to stdout. A closed stdout (`init | head`) must not abort the
/// step between two families, so write errors are ignored: the rules matter,
/// the report is a courtesy.
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}
