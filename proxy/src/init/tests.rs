//! The init step's scripts as text: each test names the rule it proves. The
//! network-namespace test (`tests/tests/e2e/init.rs`) proves the same scripts
//! redirect real connections.

use clap::Parser;

use super::plan::{Cidr, CidrList, Family, PortList};
use super::rules;
use super::InitArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    init: InitArgs,
}

fn args(flags: &[&str]) -> Result<InitArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("init").chain(flags.iter().copied())).map(|c| c.init)
}

fn script(flags: &[&str], family: Family) -> String {
    rules::install(&args(flags).unwrap().plan(), family, "")
}

const DEFAULT_V4: &str = "\
*nat
:MESHTRACE_INBOUND - [0:0]
:MESHTRACE_IN_REDIRECT - [0:0]
:MESHTRACE_OUTPUT - [0:0]
:MESHTRACE_REDIRECT - [0:0]
-A PREROUTING -p tcp -j MESHTRACE_INBOUND
-A OUTPUT -p tcp -j MESHTRACE_OUTPUT
-A MESHTRACE_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A MESHTRACE_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A MESHTRACE_INBOUND -p tcp -j MESHTRACE_IN_REDIRECT
-A MESHTRACE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A MESHTRACE_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --uid-owner 1337 -j MESHTRACE_IN_REDIRECT
-A MESHTRACE_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A MESHTRACE_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A MESHTRACE_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --gid-owner 1337 -j MESHTRACE_IN_REDIRECT
-A MESHTRACE_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A MESHTRACE_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A MESHTRACE_OUTPUT -d 127.0.0.0/8 -j RETURN
-A MESHTRACE_OUTPUT -j MESHTRACE_REDIRECT
-A MESHTRACE_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
";

#[test]
fn defaults_redirect_outbound_to_15001_and_inbound_to_15006_except_health_metrics_and_uid_1337() {
    assert_eq!(script(&[], Family::V4), DEFAULT_V4);
}

#[test]
fn ipv6_script_exempts_ipv6_loopback() {
    let expected = DEFAULT_V4.replace("127.0.0.0/8", "::1/128");
    assert_eq!(script(&[], Family::V6), expected);
}

#[test]
fn ports_uid_and_gid_come_from_the_flags() {
    let text = script(
        &[
            "--outbound-port=7001",
            "--inbound-port=7006",
            "--proxy-uid=2000",
            "--proxy-gid=3000",
        ],
        Family::V4,
    );
    assert!(text.contains("-A MESHTRACE_REDIRECT -p tcp -j REDIRECT --to-ports 7001\n"));
    assert!(text.contains("-A MESHTRACE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 7006\n"));
    assert!(text.contains("-A MESHTRACE_OUTPUT -m owner --uid-owner 2000 -j RETURN\n"));
    assert!(text.contains("-A MESHTRACE_OUTPUT -m owner --gid-owner 3000 -j RETURN\n"));
    assert!(!text.contains("1337") && !text.contains("15001") && !text.contains("15006"));
}

#[test]
fn excluded_inbound_ports_return_before_the_redirect_after_the_health_and_metrics_ports() {
    let text = script(&["--exclude-inbound-ports", "8081, 9090"], Family::V4);
    assert!(text.contains(
        "-A MESHTRACE_INBOUND -p tcp -m tcp --dport 15021 -j RETURN\n\
         -A MESHTRACE_INBOUND -p tcp -m tcp --dport 15020 -j RETURN\n\
         -A MESHTRACE_INBOUND -p tcp -m tcp --dport 8081 -j RETURN\n\
         -A MESHTRACE_INBOUND -p tcp -m tcp --dport 9090 -j RETURN\n\
         -A MESHTRACE_INBOUND -p tcp -j MESHTRACE_IN_REDIRECT\n"
    ));
}

#[test]
fn the_health_and_metrics_ports_are_excluded_once_even_when_also_given() {
    let text = script(&["--exclude-inbound-ports=15021,15020,15021"], Family::V4);
    assert_eq!(text.matches("--dport 15021").count(), 1);
    assert_eq!(text.matches("--dport 15020").count(), 1);
}

#[test]
fn excluded_outbound_ports_return_before_the_redirect() {
    let text = script(&["--exclude-outbound-ports=5432,6379"], Family::V6);
    assert!(text.contains(
        "-A MESHTRACE_OUTPUT -d ::1/128 -j RETURN\n\
         -A MESHTRACE_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n\
         -A MESHTRACE_OUTPUT -p tcp -m tcp --dport 6379 -j RETURN\n\
         -A MESHTRACE_OUTPUT -j MESHTRACE_REDIRECT\n"
    ));
}

#[test]
fn excluded_cidrs_go_to_the_table_of_their_family() {
    let flags = ["--exclude-outbound-cidrs=10.0.0.0/8,fd00::/8,169.254.169.254"];
    let v4 = script(&flags, Family::V4);
    let v6 = script(&flags, Family::V6);
    assert!(v4.contains(
        "-A MESHTRACE_OUTPUT -d 10.0.0.0/8 -j RETURN\n\
         -A MESHTRACE_OUTPUT -d 169.254.169.254/32 -j RETURN\n\
         -A MESHTRACE_OUTPUT -j MESHTRACE_REDIRECT\n"
    ));
    assert!(!v4.contains("fd00"));
    assert!(v6.contains(
        "-A MESHTRACE_OUTPUT -d fd00::/8 -j RETURN\n-A MESHTRACE_OUTPUT -j MESHTRACE_REDIRECT\n"
    ));
    assert!(!v6.contains("10.0.0.0"));
}

#[test]
fn cidrs_are_written_as_iptables_save_prints_them() {
    let parse = |text: &str| text.parse::<Cidr>().unwrap().to_string();
    assert_eq!(parse("10.1.2.3/8"), "10.0.0.0/8");
    assert_eq!(parse("fd00:0:0::1/16"), "fd00::/16");
    assert_eq!(parse("2001:db8::1"), "2001:db8::1/128");
    assert_eq!(parse("0.0.0.0/0"), "0.0.0.0/0");
    assert_eq!(parse("::/0"), "::/0");
}

#[test]
fn empty_list_flags_exclude_nothing_but_the_health_and_metrics_ports() {
    let empty = [
        "--exclude-outbound-ports=",
        "--exclude-inbound-ports=",
        "--exclude-outbound-cidrs=",
    ];
    assert_eq!(script(&empty, Family::V4), DEFAULT_V4);
}

#[test]
fn a_bad_port_names_the_flag_and_the_value() {
    for (flag, bad) in [
        ("--exclude-outbound-ports", "80,http"),
        ("--exclude-inbound-ports", "70000"),
        ("--exclude-inbound-ports", "0"),
        ("--outbound-port", "0"),
        ("--inbound-port", "-1"),
    ] {
        let error = args(&[&format!("{flag}={bad}")]).unwrap_err().to_string();
        assert!(error.contains(flag) && error.contains(bad), "{error}");
    }
}

#[test]
fn a_bad_cidr_names_the_flag_and_the_value() {
    for bad in [
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0/8",
        "example.com",
        "10.0.0.0/",
    ] {
        let error = args(&[&format!("--exclude-outbound-cidrs=10.1.0.0/16,{bad}")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--exclude-outbound-cidrs") && error.contains(bad),
            "{error}"
        );
    }
}

#[test]
fn list_flags_parse_to_typed_values() {
    assert_eq!("".parse::<PortList>().unwrap(), PortList(vec![]));
    assert_eq!(" 1, 2 ,".parse::<PortList>().unwrap(), PortList(vec![1, 2]));
    assert_eq!("".parse::<CidrList>().unwrap(), CidrList(vec![]));
}

#[test]
fn jumps_already_installed_are_not_added_again() {
    let plan = args(&[]).unwrap().plan();
    let installed = "*nat\n:PREROUTING ACCEPT [0:0]\n\
        -A PREROUTING -p tcp -j MESHTRACE_INBOUND\n\
        -A OUTPUT -p tcp -j MESHTRACE_OUTPUT\nCOMMIT\n";
    let text = rules::install(&plan, Family::V4, installed);
    let without_jumps: String = DEFAULT_V4
        .lines()
        .filter(|l| !rules::JUMPS.contains(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text, without_jumps);
}

#[test]
fn removal_flushes_then_unhooks_then_deletes_every_meshtrace_chain() {
    let installed = "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n:MESHTRACE_INBOUND - [0:0]\n:MESHTRACE_OUTPUT - [0:0]\n\
        -A PREROUTING -p tcp -j MESHTRACE_INBOUND\n-A PREROUTING -p tcp -j OTHER\n\
        -A OUTPUT -p tcp -j MESHTRACE_OUTPUT\n-A OUTPUT -p tcp -j MESHTRACE_OUTPUT\n\
        -A MESHTRACE_OUTPUT -j RETURN\nCOMMIT\n";
    assert_eq!(
        rules::remove(installed).unwrap(),
        "*nat\n:MESHTRACE_INBOUND - [0:0]\n:MESHTRACE_OUTPUT - [0:0]\n\
         -D PREROUTING -p tcp -j MESHTRACE_INBOUND\n\
         -D OUTPUT -p tcp -j MESHTRACE_OUTPUT\n-D OUTPUT -p tcp -j MESHTRACE_OUTPUT\n\
         -X MESHTRACE_INBOUND\n-X MESHTRACE_OUTPUT\nCOMMIT\n"
    );
}

#[test]
fn removal_of_nothing_is_nothing() {
    assert_eq!(rules::remove("*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"), None);
}
