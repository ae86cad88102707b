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
fn key_may_start_with_a_digit() {
    let ts = parse(&["1abc=1,0tenant@vendor=x"]).unwrap();
    assert_eq!(ts.get("1abc"), Some("1"));
    assert_eq!(ts.get("0tenant@vendor"), Some("x"));
}

#[test]
fn at_sign_is_allowed_anywhere_after_the_first_character() {
    let list = "fw529a3039@dt=ab,a@1sys=1,a@b@c=2,a@=3,k@@_-*/=4";
    assert_eq!(rendered(&parse(&[list]).unwrap()), list);
}

#[test]
fn tenant_and_system_parts_have_no_limits_of_their_own() {
    // Valid now, invalid under the earlier `tenant@system` rule: a 242-character
    // tenant, a 15-character system, a system starting with a digit.
    let tenant = format!("{}@s", "t".repeat(242));
    let system = "a@sys_toolongname";
    let digit = "a@1sys";
    let list = format!("{tenant}=1,{system}=2,{digit}=3");
    assert_eq!(rendered(&parse(&[&list]).unwrap()), list);
}

#[test]
fn key_of_256_characters_is_valid_257_is_not() {
    let key = |len| "k".repeat(len);
    assert_eq!(parse(&[&format!("{}=1", key(256))]).unwrap().len(), 1);
    assert_eq!(
        parse(&[&format!("{}=1", key(257))]),
        Err(TraceStateError::Malformed)
    );
}

#[test]
fn key_may_not_start_with_at_sign_or_underscore() {
    for bad in ["@a=1", "_a=1", "-a=1", "*a=1", "/a=1"] {
        assert_eq!(parse(&[bad]), Err(TraceStateError::Malformed), "{bad}");
    }
}

#[test]
fn malformed_keys_and_values_are_invalid() {
    for bad in ["Rojo=1", "=1", "a b=1", "a=", "a", "a=b,c", "a=b=c"] {
        assert_eq!(parse(&[bad]), Err(TraceStateError::Malformed), "{bad}");
    }
}

#[test]
fn duplicate_key_keeps_the_first_member_and_the_rest_of_the_list() {
    let ts = parse(&["a=1,b=2,a=3,c=4"]).unwrap();
    assert_eq!(rendered(&ts), "a=1,b=2,c=4");
}

#[test]
fn duplicate_key_in_a_second_header_line_keeps_the_first() {
    let ts = parse(&["rojo=1,congo=2", "rojo=3,dd=s:1"]).unwrap();
    assert_eq!(rendered(&ts), "rojo=1,congo=2,dd=s:1");
}

#[test]
fn malformed_duplicate_still_makes_the_list_invalid() {
    assert_eq!(parse(&["a=1,a="]), Err(TraceStateError::Malformed));
}

#[test]
fn duplicates_do_not_count_toward_the_thirty_two_members() {
    let list = format!("{},k0=again", n_members(32));
    let ts = parse(&[&list]).unwrap();
    assert_eq!(ts.len(), 32);
    assert_eq!(ts.get("k0"), Some("v0"));
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
fn normalised_single_line_is_kept_without_copying() {
    let line = HeaderValue::from_static("rojo=1,congo=2");
    let ts = TraceState::parse([&line]).unwrap();
    let kept = ts.header_value().unwrap();
    assert_eq!(kept.as_bytes().as_ptr(), line.as_bytes().as_ptr());
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
fn updates_follow_the_same_key_rule_as_parsing() {
    let mut ts = TraceState::default();
    assert!(ts.set_front("1ab@c@d", "x"));
    assert!(ts.set_front(&"k".repeat(256), "x"));
    for bad in ["@a".to_string(), "_a".to_string(), "k".repeat(257)] {
        assert!(!ts.set_front(&bad, "x"), "{bad}");
    }
    assert_eq!(ts.len(), 2);
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

/// The one-scan check for an already normalised line never accepts what the
/// full validation rejects or would change.
#[test]
fn the_fast_scan_accepts_only_what_validation_keeps_as_is() {
    let key_256 = format!("a{}=1", "b".repeat(255));
    let key_257 = format!("a{}=1", "b".repeat(256));
    let value_256 = format!("k={}", "v".repeat(256));
    let value_257 = format!("k={}", "v".repeat(257));
    let many = [n_members(32), n_members(33)];
    let lists = [
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "a=1",
        "",
        "a=",
        "=1",
        "A=1",
        "_a=1",
        "a=1,",
        ",a=1",
        "a=1,,b=2",
        "a=1, b=2",
        "a=1 ,b=2",
        "a=1,a=2",
        "a=b=c",
        "a=x y",
        "a=x ",
        "a@b=1,0x/-*_@=~!",
        "a=\t",
        key_256.as_str(),
        key_257.as_str(),
        value_256.as_str(),
        value_257.as_str(),
        many[0].as_str(),
        many[1].as_str(),
    ];
    let mut accepted = 0;
    for list in lists {
        let fast = is_normalised(list.as_bytes());
        let full = validate(list.as_bytes(), |_| {});
        if fast {
            accepted += 1;
            assert!(
                full.as_ref().is_ok_and(|c| c.normalised && c.count > 0),
                "{list:?}: the scan accepts what validation would reject or change"
            );
        }
    }
    // The common shapes do take the fast way.
    assert_eq!(accepted, 6);
}

/// The scan says yes exactly when validation finds a list it would send as it
/// came with no space inside a value: over seeded random lists drawn from the
/// bytes that matter to the grammar.
#[test]
fn the_normalised_scan_agrees_with_validation_on_random_lists() {
    const ALPHABET: &[u8] = b"az09_-*/@=, \tA~\x7f\x80";
    let mut rng = fastrand::Rng::with_seed(18);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let len = rng.usize(0..24);
        let list: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.usize(..ALPHABET.len())])
            .collect();
        let full = validate(&list, |_| {}).is_ok_and(|c| c.normalised && c.count > 0);
        let expected = full && !list.contains(&b' ');
        assert_eq!(
            is_normalised(&list),
            expected,
            "{:?}",
            String::from_utf8_lossy(&list)
        );
        accepted += usize::from(expected);
    }
    // Enough of the draws are valid lists for the agreement to mean something.
    assert!(accepted > 100, "{accepted}");
}

/// The word test for value bytes flags exactly the bytes `class` calls
/// `nblk`, every byte value in every position.
#[test]
fn value_bytes_as_words_agree_with_the_class_table() {
    for b in 0..=255u8 {
        for at in 0..8 {
            let mut bytes = *b"abcdefgh";
            bytes[at] = b;
            let flags = value_bytes(u64::from_le_bytes(bytes)).to_le_bytes();
            for (i, byte) in bytes.into_iter().enumerate() {
                let expected = class(byte) & NBLK != 0;
                assert_eq!(flags[i] & 0x80 != 0, expected, "{byte:#x} at {i}");
            }
        }
    }
}
