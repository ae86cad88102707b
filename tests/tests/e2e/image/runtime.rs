//! The container runtime side of the image test: an OCI bundle unpacked with
//! umoci, containers run by runc (one-shot or kept running, deleted on drop), and
//! the network namespace they share with the test's echo server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use meshtrace_tests::bound::within;
use meshtrace_tests::netns::{self, Netns};
use meshtrace_tests::process::{Group, Logs, Supervised};
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::time::Instant;

/// How often a readiness probe is asked again.
const POLL: Duration = Duration::from_millis(20);

/// Adds a read-only bind mount of `source` at `destination` to a runc config.
pub fn mount(config: &mut Value, source: &Path, destination: &str) {
    if let Some(mounts) = config["mounts"].as_array_mut() {
        mounts.push(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro"],
        }));
    }
}

/// Runs the process as the pod's init container does: uid 0 with NET_ADMIN and
/// NET_RAW (the injector's `meshtrace-init`).
pub fn as_init_container(config: &mut Value) {
    config["process"]["user"] = json!({"uid": 0, "gid": 0});
    let caps = json!(["CAP_NET_ADMIN", "CAP_NET_RAW"]);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        config["process"]["capabilities"][set] = caps.clone();
    }
}

// === impl Bundle ===

/// An image unpacked into an OCI runtime bundle (`config.json` + `rootfs/`),
/// removed on drop.
pub struct Bundle {
    dir: PathBuf,
    id: String,
}

impl Bundle {
    /// Unpacks `image` (`LAYOUT:REF`), or says why it cannot.
    pub fn unpack(image: &str, test: &str) -> Result<Self, String> {
        if let Some(why) = netns::missing_prerequisite(&["ip", "umoci", "runc"]) {
            return Err(why);
        }
        let layout = image.rsplit_once(':').map_or(image, |(dir, _)| dir);
        if !Path::new(layout).join("index.json").exists() {
            return Err(format!(
                "no image at {layout} (bash scripts/images.sh builds it)"
            ));
        }
        let id = format!("meshtrace-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = Self { dir, id };
        let path = bundle.dir.to_string_lossy().into_owned();
        netns::sync(&["umoci", "unpack", "--image", image, &path])?;
        std::fs::copy(bundle.path("config.json"), bundle.path("image-config.json"))
            .map_err(|e| format!("keep config.json: {e}"))?;
        Ok(bundle)
    }

    /// The runtime config umoci wrote from the image's config (each run edits a
    /// copy of it).
    pub fn config(&self) -> Value {
        let text =
            std::fs::read_to_string(self.path("image-config.json")).expect("read config.json");
        serde_json::from_str(&text).expect("config.json is JSON")
    }

    /// The image's file system.
    pub fn rootfs(&self) -> PathBuf {
        self.path("rootfs")
    }

    /// A path in the bundle's directory (outside the container's root).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a file beside the rootfs, to bind-mount into the container.
    pub fn file(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write a bundle file");
    }

    /// Runs `args` in a container with its own fresh namespaces; its output.
    pub async fn run(&self, args: &[&str], edit: impl FnOnce(&mut Value)) -> String {
        self.run_with(None, args, edit).await
    }

    /// Runs `args` in a container inside `ns`; its output.
    pub async fn run_in(&self, ns: &Netns, args: &[&str], edit: impl FnOnce(&mut Value)) -> String {
        self.run_with(Some(ns), args, edit).await
    }

    async fn run_with(
        &self,
        ns: Option<&Netns>,
        args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> String {
        self.configure(ns, |config| {
            config["process"]["args"] = json!(args);
            edit(config);
        });
        let _container = Container(self);
        let out = within(
            format!("runc run {}", args.join(" ")),
            self.runc()
                .args(["run", "--bundle"])
                .arg(&self.dir)
                .arg(&self.id)
                .output(),
        )
        .await
        .expect("run runc");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "`{}` in the image failed: {text}",
            args.join(" ")
        );
        text
    }

    /// Starts the container inside `ns` and leaves it running until the guard drops.
    pub fn start(&self, ns: &Netns, edit: impl FnOnce(&mut Value)) -> Running<'_> {
        self.configure(Some(ns), edit);
        let mut command = self.runc();
        command
            .args(["run", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id);
        let process = Supervised::spawn(
            "the proxy container",
            command,
            Logs::Capture,
            Group::Inherit,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Running {
            process,
            _container: Container(self),
        }
    }

    /// Rewrites config.json: no terminal, `ns` as its network namespace, then `edit`.
    fn configure(&self, ns: Option<&Netns>, edit: impl FnOnce(&mut Value)) {
        let mut config = self.config();
        config["process"]["terminal"] = json!(false);
        if let (Some(ns), Some(namespaces)) = (ns, config["linux"]["namespaces"].as_array_mut()) {
            namespaces.retain(|n| n["type"] != "network");
            namespaces
                .push(json!({"type": "network", "path": format!("/run/netns/{}", ns.name())}));
        }
        edit(&mut config);
        let text = serde_json::to_string_pretty(&config).expect("serialise config.json");
        std::fs::write(self.path("config.json"), text).expect("write config.json");
    }

    /// runc with its state kept in the bundle's directory.
    fn runc(&self) -> Command {
        let mut command = Command::new("runc");
        command
            .arg("--root")
            .arg(self.path("runc-state"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A container of a bundle, force-deleted (killed) on drop: killing `runc run`
/// alone would leave the container's process running.
struct Container<'a>(&'a Bundle);

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(self.0.path("runc-state"))
            .args(["delete", "--force", &self.0.id])
            .output();
    }
}

/// A running container: the `runc run` process (its output) and the container.
pub struct Running<'a> {
    process: Supervised,
    _container: Container<'a>,
}

impl Running<'_> {
    /// The container's output so far (failure messages).
    pub fn tail(&self) -> String {
        self.process.tail()
    }
}

// === the namespace's side ===

/// One HTTP GET from inside the namespace: status line and body.
pub async fn get(ns: &Netns, url: &str) -> String {
    ns.must(&[env!("CARGO_BIN_EXE_netns-tool"), "get", url])
        .await
}

/// Asks `url` from inside the namespace until it answers 200, at most `limit`.
pub async fn wait_ready(ns: &Netns, url: &str, limit: Duration, container: &Running<'_>) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = ns
            .run(&[env!("CARGO_BIN_EXE_netns-tool"), "get", url])
            .await;
        if answer.status.success() && answer.stdout.starts_with(b"HTTP/1.1 200") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {limit:?}; the container's output ends:\n{}",
            container.tail()
        );
        tokio::time::sleep(POLL).await;
    }
}
