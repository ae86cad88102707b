//! What stays the pod's own when a configuration arrives from elsewhere.
//!
//! Two rules, for two sources:
//!
//! - a pushed (or cached) config is completed with the pod's plumbing before it
//!   is validated ([`local_view`]): the control plane sets mesh policy, the pod
//!   keeps its identity, its listeners and its connection to the control plane;
//! - any new config, pushed or from the file, keeps the settings only a restart
//!   changes (`keep_startup_settings`).

use meshtrace_config::Config;

/// A pushed (or cached) config as this pod runs it, then validated. The control
/// plane sets mesh policy (propagation, sampling, spans, export, outbound routes,
/// timeouts, limits); the pod's own plumbing stays the local file's and the
/// environment's: `workload` (identity), `control`, `admin`, `runtime`, `log`, and
/// the listeners and app address (`inbound.listen`, `inbound.app_host`,
/// `inbound.app_port`, `outbound.listen`), which the injector sets per pod. A pushed
/// config therefore never moves a listener; a local file reload may.
pub fn local_view(pushed: serde_json::Value, local: &Config) -> Result<Config, String> {
    let mut config: Config =
        serde_json::from_value(pushed).map_err(|e| format!("not a sidecar config: {e}"))?;
    config.workload = local.workload.clone();
    config.inbound.listen = local.inbound.listen;
    config.inbound.app_host = local.inbound.app_host;
    config.inbound.app_port = local.inbound.app_port;
    config.outbound.listen = local.outbound.listen;
    config.control = local.control.clone();
    config.admin = local.admin.clone();
    config.runtime = local.runtime.clone();
    config.log = local.log.clone();
    config
        .finish("control plane", &|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())
}

/// `config` with the settings that only a restart changes taken from `running`
/// (a warning names any that differed).
pub(crate) fn keep_startup_settings(mut config: Config, running: &Config) -> Config {
    let mut ignored = Vec::new();
    macro_rules! keep {
        ($($field:ident).+) => {
            if config.$($field).+ != running.$($field).+ {
                ignored.push(stringify!($($field).+));
                config.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    // Never pushed: the control plane connection itself.
    config.control = running.control.clone();
    keep!(admin);
    keep!(runtime);
    keep!(log.format);
    keep!(log.level);
    keep!(limits.backlog);
    keep!(limits.max_connections);
    keep!(timeouts.connect);
    keep!(timeouts.idle);
    if !ignored.is_empty() {
        tracing::warn!(settings = ?ignored, "these settings change only on restart; keeping the running values");
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_configs_keep_local_sections() {
        let mut local = Config::default();
        local.admin.listen = "127.0.0.1:19999".parse().unwrap();
        local.control.url = Some("http://cp:15010".into());
        let mut pushed = Config::default();
        pushed.sampling.default_rate = 0.25;
        let view = local_view(serde_json::to_value(&pushed).unwrap(), &local).unwrap();
        assert_eq!(view.sampling.default_rate, 0.25);
        assert_eq!(view.admin.listen, local.admin.listen);
        assert_eq!(view.control, local.control);
        let mut elsewhere = pushed.clone();
        elsewhere.inbound.listen = "0.0.0.0:1".parse().unwrap();
        elsewhere.inbound.app_port = meshtrace_config::AppPort::Fixed(1);
        let view = local_view(serde_json::to_value(&elsewhere).unwrap(), &local).unwrap();
        assert_eq!(
            view.inbound, local.inbound,
            "a push never moves the pod's plumbing"
        );
        let mut named = local.clone();
        named.workload.service = Some("checkout".into());
        let view = local_view(serde_json::to_value(&pushed).unwrap(), &named).unwrap();
        assert_eq!(
            view.workload.service.as_deref(),
            Some("checkout"),
            "identity is local"
        );
        let mut bad = serde_json::to_value(&pushed).unwrap();
        bad["sampling"]["default_rate"] = serde_json::json!(3.0);
        let error = local_view(bad, &local).unwrap_err();
        assert!(error.contains("sampling.default_rate"), "{error}");
    }

    #[test]
    fn a_new_config_keeps_the_settings_only_a_restart_changes() {
        let running = Config::default();
        let mut next = running.clone();
        next.limits.backlog += 1;
        next.sampling.default_rate = 0.5;
        let kept = keep_startup_settings(next, &running);
        assert_eq!(kept.limits.backlog, running.limits.backlog);
        assert_eq!(kept.sampling.default_rate, 0.5, "policy still applies");
    }
}
