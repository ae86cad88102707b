//! The sidecar's hot-code layout: which of a link's symbols
//! `proxy/link/hot-order.awk` (run by the linker wrapper `proxy/link/ld.gold`
//! on every release link of `meshtrace-proxy`) places first, and in what order.
//! The list (`proxy/hot-symbols.txt`) comes from one build; the names of
//! another build carry other hashes, and its functions must still be found.

use std::path::PathBuf;
use std::process::Command;

/// The names of `names` that `hot-order.awk` places, in its order, for `list`.
fn placed(test: &str, list: &[&str], names: &[&str]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("meshtrace-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (list_file, names_file) = (dir.join("hot-symbols.txt"), dir.join("names"));
    std::fs::write(&list_file, list.join("\n") + "\n").unwrap();
    std::fs::write(&names_file, names.join("\n") + "\n").unwrap();
    let awk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxy/link/hot-order.awk");
    let out = Command::new("awk")
        .arg("-f")
        .arg(&awk)
        .arg(&list_file)
        .arg(&names_file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ranked: Vec<(u32, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (rank, name) = line.split_once('\t').unwrap();
            (rank.parse().unwrap(), name.to_owned())
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, name)| name).collect()
}

const SET_A: &str = "_ZN15meshtrace_proxy11propagation5value3set17h723bf20bc7ebd27aE";
const SET_B: &str = "_ZN15meshtrace_proxy11propagation5value3set17hd7eb2992e2be4cffE";
const POLL_A: &str = "_ZN5tokio7runtime4task3raw4poll17h0123456789abcdefE";
const POLL_B: &str = "_ZN5tokio7runtime4task3raw4poll17hfedcba9876543210E";
const COLD: &str = "_ZN15meshtrace_proxy7explain5build17h1111111111111111E";

#[test]
fn listed_names_come_first_in_the_list_s_order_and_the_rest_stays_out() {
    let names = [COLD, POLL_A, SET_A];
    assert_eq!(
        placed("hot-exact", &[SET_A, POLL_A], &names),
        [SET_A, POLL_A]
    );
}

#[test]
fn a_function_whose_hash_changed_is_found_by_its_name() {
    // Another build (a new dependency, the image profile): other hashes.
    assert_eq!(placed("hot-rehashed", &[SET_A], &[COLD, SET_B]), [SET_B]);
}

#[test]
fn an_exact_instance_keeps_the_other_instances_of_a_generic_function_out() {
    // Legacy names drop generic arguments: instances differ only by hash.
    assert_eq!(
        placed("hot-instance", &[POLL_A], &[POLL_B, POLL_A]),
        [POLL_A]
    );
    // None of the listed instances is there: every instance is taken.
    let taken = placed("hot-instances", &[POLL_A], &[POLL_B, COLD]);
    assert_eq!(taken, [POLL_B]);
}

#[test]
fn v0_names_match_across_crate_disambiguators() {
    let listed = "_RNvMs_NtCsjrHSEGnQ3l9_3std4syncNtB4_4Once4call";
    let built = "_RNvMs_NtCs9Sw1VW1ctwo_3std4syncNtB4_4Once4call";
    assert_eq!(placed("hot-v0", &[listed], &[built]), [built]);
}
