use super::*;

fn parse(lines: &[&str]) -> Result<TraceState, TraceStateError> {
    let values: Vec<HeaderValue> = lines
        .iter()
        .map(|l| HeaderValue::from_str(l).unwrap())
        .collect();
    TraceState::parse(&values)
}

fn rendered(ts: &TraceState) -> &str {
    ts.header_value().map_or("", |v| v.to_str().unwrap())
}

fn n_members(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn spec_example_keeps_order() {
    let ts = parse(&["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).unwrap();
    let members: Vec<_> = ts.members().collect();
    assert_eq!(
        members,
        [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
    );
}

#[test]
fn multiple_header_lines_are_one_list() {
    let ts = parse(&["rojo=1", "congo=2"]).unwrap();
    assert_eq!(rendered(&ts), "rojo=1,congo=2");
}

#[test]
fn spaces_and_empty_members_are_normalised_away() {
    let ts = parse(&[" rojo=1 ,\t, congo=2 ,"]).unwrap();
    assert_eq!(rendered(&ts), "rojo=1,congo=2");
}

#[test]
fn multi_tenant_keys_are_valid() {
    let ts = parse(&["fw529a3039@dt=ab,0tenant@vendor=x"]).unwrap();
    assert_eq!(ts.get("fw529a3039@dt"), Some("ab"));
}

#[test]
fn malformed_keys_and_values_are_invalid() {
    for bad in [
        "Rojo=1",
        "1abc=1",
        "a=",
        "a",
        "a=b,c",
        "a=b=c",
        "a@1sys=1",
        "a@sys_toolongname=1",
    ] {
        assert_eq!(parse(&[bad]), Err(TraceStateError::Malformed), "{bad}");
    }
}

#[test]
fn duplicate_keys_are_invalid() {
    assert_eq!(parse(&["a=1,b=2,a=3"]), Err(TraceStateError::DuplicateKey));
}

#[test]
fn thirty_two_members_are_valid_and_thirty_three_are_not() {
    assert_eq!(parse(&[&n_members(32)]).unwrap().len(), 32);
    assert_eq!(
        parse(&[&n_members(33)]),
        Err(TraceStateError::TooManyMembers)
    );
}

#[test]
fn empty_tracestate_is_valid_and_empty() {
    assert!(parse(&[""]).unwrap().is_empty());
    assert!(parse(&[]).unwrap().is_empty());
}

/// A list of exactly `len` characters whose last member is `last=…`.
fn list_of_len(len: usize) -> String {
    let head = "a=".to_string()
        + &"x".repeat(100)
        + ",b="
        + &"y".repeat(100)
        + ",c="
        + &"z".repeat(100)
        + ",d="
        + &"w".repeat(100);
    let rest = len - head.len() - ",last=".len();
    format!("{head},last={}", "q".repeat(rest))
}

#[test]
fn five_hundred_twelve_characters_pass_untrimmed() {
    let list = list_of_len(512);
    let ts = parse(&[&list]).unwrap();
    assert_eq!(rendered(&ts), list);
}

#[test]
fn over_five_hundred_twelve_characters_drop_members_from_the_end() {
    let ts = parse(&[&list_of_len(513)]).unwrap();
    assert_eq!(ts.get("last"), None);
    assert!(rendered(&ts).len() <= MAX_LEN);
    assert_eq!(ts.get("a").map(str::len), Some(100));
}

#[test]
fn over_the_limit_long_members_go_first() {
    let long = format!("big={}", "v".repeat(200));
    let short: Vec<String> = (0..22)
        .map(|i| format!("k{i:02}={}", "s".repeat(10)))
        .collect();
    let list = format!("{long},{}", short.join(","));
    assert!(list.len() > MAX_LEN);
    let ts = parse(&[&list]).unwrap();
    assert_eq!(ts.get("big"), None);
    assert_eq!(
        ts.len(),
        22,
        "short members survive when dropping the long one suffices"
    );
}

#[test]
fn updated_member_moves_to_the_front() {
    let mut ts = parse(&["rojo=1,dd=s:1,congo=2"]).unwrap();
    assert!(ts.set_front("dd", "s:2;o:rum"));
    assert_eq!(rendered(&ts), "dd=s:2;o:rum,rojo=1,congo=2");
}

#[test]
fn adding_a_thirty_third_member_drops_the_last() {
    let mut ts = parse(&[&n_members(32)]).unwrap();
    ts.set_front("ot", "th:8");
    assert_eq!(ts.len(), 32);
    assert_eq!(ts.members().next(), Some(("ot", "th:8")));
    assert_eq!(ts.get("k31"), None);
}

#[test]
fn invalid_updates_are_refused() {
    let mut ts = TraceState::default();
    assert!(!ts.set_front("Bad", "x"));
    assert!(!ts.set_front("ok", "a,b"));
    assert!(ts.is_empty());
}

#[test]
fn remove_drops_only_that_key() {
    let mut ts = parse(&["a=1,dd=x,b=2"]).unwrap();
    ts.remove("dd");
    assert_eq!(rendered(&ts), "a=1,b=2");
}

#[test]
fn spaces_around_a_member_are_not_part_of_its_value() {
    assert_eq!(parse(&["a=x "]).unwrap().get("a"), Some("x"));
}
