//! Links the `meshtrace-proxy` binary with the code it runs packed together.
//!
//! The sidecar's resident memory is mostly its own code: Linux maps a
//! binary's file pages 64 KiB at a time around each one touched, and the ~1.9
//! MB of functions a sidecar runs (start-up, serving, probes, export) were
//! spread over the whole 7 MB of text, so ~4.7 MB of it was resident in an
//! idle sidecar. `hot-symbols.txt` lists those functions (made by
//! `benches/load/hot-symbols.sh` from a release build under a load); linked
//! first, in that order, by LLVM's linker (`--symbol-ordering-file`), they
//! take ~1.9 MB of pages. benches/RESULTS.md, "code layout", has the figures.
//!
//! The list holds one build's symbol names, whose hashes change with the
//! profile, the target and every change to the dependency graph, so `cc`
//! links through `link/ld.gold`, which matches the list with the symbols of
//! the objects being linked (`link/hot-order.awk`: a listed name exactly, else
//! every name with the same hash-free key) and runs the
//! linker rustup ships with every Linux toolchain (`rust-lld`, through its
//! `gcc-ld` wrapper) with the result. A toolchain without it links as before,
//! with a warning; functions the list holds that the code no longer has are
//! skipped: a stale list loosens the layout, it never breaks the build.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-changed=link");
    println!("cargo:rerun-if-changed=build.rs");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    // `release` and the profiles inheriting it (the images'); a debug build's
    // layout is not worth the link's symbol scan.
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    if !(linux && release) {
        return;
    }
    let Some(lld) = gcc_ld() else {
        println!("cargo:warning=rust-lld not found in the toolchain: meshtrace-proxy is linked without its hot-code layout");
        return;
    };
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // The link step runs in rustc's environment: proxy/link/ld.gold reads these.
    println!("cargo:rustc-env=MESHTRACE_LLD={}", lld.display());
    println!(
        "cargo:rustc-env=MESHTRACE_HOT_SYMBOLS={}",
        manifest.join("hot-symbols.txt").display()
    );
    for arg in [
        format!("-B{}/", manifest.join("link").display()),
        // The last -fuse-ld wins: `cc` runs link/ld.gold (see its header).
        "-fuse-ld=gold".to_owned(),
    ] {
        println!("cargo:rustc-link-arg-bin=meshtrace-proxy={arg}");
    }
}

/// The toolchain's `ld.lld` (its gcc-ld wrapper, which runs `rust-lld`), if any.
fn gcc_ld() -> Option<PathBuf> {
    let rustc = env::var_os("RUSTC")?;
    let host = env::var("HOST").ok()?;
    let out = Command::new(rustc)
        .arg("--print")
        .arg("sysroot")
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let lld = PathBuf::from(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/gcc-ld/ld.lld");
    lld.is_file().then_some(lld)
}
