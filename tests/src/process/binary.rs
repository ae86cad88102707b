//! Finds the `meshtrace-proxy` binary for process tests, building it first.
//!
//! Cargo only builds a package's own binaries for its tests, so this crate cannot
//! ask for `CARGO_BIN_EXE_meshtrace-proxy`. Instead the binary is expected next
//! to the test executable's `deps/` directory (`target/debug/meshtrace-proxy`),
//! and `cargo build --workspace --bins` runs once per test process first, so a
//! test never runs a stale binary. `MESHTRACE_PROXY_BIN` overrides all of this
//! (a release build for a memory test, a binary built elsewhere).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

/// The binary's file name.
const NAME: &str = "meshtrace-proxy";

/// How long the one build may take: the first one compiles the whole proxy.
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The path of an up-to-date proxy binary; panics, saying why, if there is none.
pub async fn proxy_binary() -> &'static Path {
    static BINARY: OnceCell<PathBuf> = OnceCell::const_new();
    BINARY.get_or_init(locate).await
}

async fn locate() -> PathBuf {
    if let Some(path) = std::env::var_os("MESHTRACE_PROXY_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "MESHTRACE_PROXY_BIN={} is not a file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.ends_with("deps"))
        .and_then(Path::parent)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a cargo target/<profile>/deps directory",
                exe.display()
            )
        });
    let binary = profile_dir.join(NAME);
    build(profile_dir).await;
    assert!(
        binary.is_file(),
        "{} does not exist: build it with `cargo build -p meshtrace-proxy` \
         (or point MESHTRACE_PROXY_BIN at a binary)",
        binary.display()
    );
    binary
}

/// Runs `cargo build --workspace --bins` for the profile the tests were built
/// with. The whole workspace, not `-p meshtrace-proxy`: that is what the test
/// command builds, so the feature set matches and the build is a no-op instead
/// of recompiling the proxy with different dependency features mid-suite. A
/// failure is reported but not fatal: an existing binary is still used.
async fn build(profile_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--workspace", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true);
    if let Some(target_dir) = profile_dir.parent() {
        command.arg("--target-dir").arg(target_dir);
    }
    if profile_dir.ends_with("release") {
        command.arg("--release");
    }
    let outcome = tokio::time::timeout(BUILD_LIMIT, command.output()).await;
    match outcome {
        Ok(Ok(output)) if output.status.success() => {}
        Ok(Ok(output)) => eprintln!(
            "warning: `cargo build --workspace --bins` failed ({}); using the existing binary if any:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(Err(error)) => eprintln!("warning: cannot run cargo ({error}); using the existing binary if any"),
        Err(_) => eprintln!(
            "warning: `cargo build --workspace --bins` took over {BUILD_LIMIT:?}; using the existing binary if any"
        ),
    }
}

/// `meshtrace-control`, built next to `meshtrace-proxy` by the same build.
pub async fn control_binary() -> PathBuf {
    let binary = proxy_binary().await.with_file_name("meshtrace-control");
    assert!(
        binary.is_file(),
        "{} does not exist: build it with `cargo build -p meshtrace-control`",
        binary.display()
    );
    binary
}
