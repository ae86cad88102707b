//! The parser against the HTML standard's examples, its line-ending rules, its
//! bounds, and its cost.

use super::*;

/// Every event of `stream` fed in one chunk.
fn parse(stream: &[u8]) -> Vec<SseEvent> {
    let mut events = Vec::new();
    SseParser::default().feed(stream, &mut events).unwrap();
    events
}

/// Every event of `stream` fed in chunks of `size` bytes.
fn parse_in_chunks(stream: &[u8], size: usize) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for chunk in stream.chunks(size) {
        parser.feed(chunk, &mut events).unwrap();
    }
    events
}

fn event(name: &str, id: Option<&str>, data: &str) -> SseEvent {
    SseEvent {
        event: name.into(),
        id: id.map(String::from),
        data: data.into(),
    }
}

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn spec_data_lines_join_with_line_feeds() {
    let events = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
    assert_eq!(events, [event("message", None, "YHOO\n+2\n10")]);
}

#[test]
fn spec_comments_ids_and_one_leading_space() {
    let stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
    assert_eq!(
        parse(stream),
        [
            event("message", Some("1"), "first event"),
            event("message", Some(""), "second event"),
            event("message", Some(""), " third event"),
        ]
    );
}

#[test]
fn spec_empty_data_lines_dispatch_and_an_unfinished_event_does_not() {
    assert_eq!(data(&parse(b"data\n\ndata\ndata\n\ndata:")), ["", "\n"]);
}

#[test]
fn spec_a_space_after_the_colon_is_optional() {
    assert_eq!(
        data(&parse(b"data:test\n\ndata: test\n\n")),
        ["test", "test"]
    );
}

#[test]
fn an_event_without_data_is_not_dispatched_and_its_name_is_forgotten() {
    assert_eq!(
        parse(b"event: config\n\ndata: x\n\n"),
        [event("message", None, "x")]
    );
}

#[test]
fn crlf_cr_and_lf_all_end_lines() {
    let stream = b"event: config\r\ndata: a\rdata: b\ndata: c\r\n\r\r\n\n";
    assert_eq!(parse(stream), [event("config", None, "a\nb\nc")]);
}

#[test]
fn a_crlf_split_between_chunks_is_one_line_ending() {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.feed(b"data: a\r", &mut events).unwrap();
    parser.feed(b"\ndata: b\r", &mut events).unwrap();
    parser.feed(b"\n\r", &mut events).unwrap();
    parser.feed(b"\n", &mut events).unwrap();
    assert_eq!(data(&events), ["a\nb"], "no blank line between a and b");
}

#[test]
fn every_split_of_a_stream_gives_the_same_events() {
    let stream = "\u{feff}: keepalive\r\n\r\nevent: config\r\nid: 3\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nretry: 5\rdata: é\r\r: bye\n"
        .as_bytes();
    let whole = parse(stream);
    assert_eq!(
        whole,
        [
            event("config", Some("3"), "{\"a\":\n1}"),
            event("message", Some("3"), "é"),
        ]
    );
    for size in 1..stream.len() {
        assert_eq!(parse_in_chunks(stream, size), whole, "chunks of {size}");
    }
}

#[test]
fn a_byte_order_mark_is_skipped_only_at_the_start() {
    assert_eq!(data(&parse("\u{feff}data: a\n\n".as_bytes())), ["a"]);
    let later = parse("data: a\n\n\u{feff}data: b\n\n".as_bytes());
    assert_eq!(data(&later), ["a"], "a later BOM makes an unknown field");
}

#[test]
fn an_event_at_the_size_limit_is_accepted() {
    let limits = Limits {
        line: 64,
        event: 10,
    };
    let mut events = Vec::new();
    let mut parser = SseParser::with_limits(limits);
    parser
        .feed(b"event: abcd\ndata: 12\ndata: 3\n\n", &mut events)
        .unwrap();
    assert_eq!(
        events,
        [event("abcd", None, "12\n3")],
        "4 + 2 + 1 + 1 = 10 bytes"
    );
}

#[test]
fn an_event_over_the_size_limit_is_an_error() {
    let limits = Limits {
        line: 64,
        event: 10,
    };
    let mut events = Vec::new();
    let mut parser = SseParser::with_limits(limits);
    let error = parser
        .feed(
            b"data: ok\n\nevent: abcd\ndata: 12\ndata: 3456\n\n",
            &mut events,
        )
        .unwrap_err();
    assert_eq!(error, SseError::EventTooLarge { limit: 10 });
    assert_eq!(error.to_string(), "an SSE event exceeded 10 bytes");
    assert_eq!(data(&events), ["ok"], "events before the error are kept");
}

#[test]
fn a_line_at_the_limit_is_accepted_and_one_byte_more_is_an_error() {
    let limits = Limits { line: 8, event: 64 };
    let mut events = Vec::new();
    SseParser::with_limits(limits)
        .feed(b"data: ab\r\n\r\n", &mut events)
        .unwrap();
    assert_eq!(data(&events), ["ab"]);
    let mut parser = SseParser::with_limits(limits);
    parser.feed(b"data: ab", &mut events).unwrap();
    let error = parser.feed(b"c", &mut events).unwrap_err();
    assert_eq!(error, SseError::LineTooLong { limit: 8 });
    assert_eq!(error.to_string(), "an SSE line exceeded 8 bytes");
}

#[test]
fn after_an_error_the_stream_stays_broken() {
    let limits = Limits { line: 8, event: 64 };
    let mut parser = SseParser::with_limits(limits);
    let mut events = Vec::new();
    let error = parser.feed(b"data: abcdef", &mut events).unwrap_err();
    assert_eq!(parser.feed(b"\n\ndata: x\n\n", &mut events), Err(error));
    assert!(events.is_empty());
}

#[test]
fn the_default_limits_fit_a_maximum_event_on_one_data_line() {
    let mut line = b"data: ".to_vec();
    line.resize(MAX_LINE, b'x');
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.feed(&line, &mut events).unwrap();
    parser.feed(b"\n\n", &mut events).unwrap();
    assert_eq!(events[0].data.len(), MAX_EVENT);
    let error = SseParser::default()
        .feed(&[line.as_slice(), b"x"].concat(), &mut events)
        .unwrap_err();
    assert_eq!(error, SseError::LineTooLong { limit: MAX_LINE });
}

/// Linear time: a parser that rescanned its buffer on every chunk would need
/// ~10^14 steps here and never finish.
#[test]
fn a_maximum_event_fed_one_byte_at_a_time_is_parsed() {
    let mut stream = b"event: config\ndata: ".to_vec();
    stream.resize(stream.len() + MAX_EVENT - "config".len(), b'x');
    stream.extend_from_slice(b"\n\n");
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for byte in stream.chunks(1) {
        parser.feed(byte, &mut events).unwrap();
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.len() + events[0].event.len(), MAX_EVENT);
}

#[test]
fn an_event_renders_as_it_is_parsed() {
    let sent = event("config", Some("7"), "{\"a\":\n1}");
    assert_eq!(
        sent.to_string(),
        "event: config\nid: 7\ndata: {\"a\":\ndata: 1}\n\n"
    );
    assert_eq!(parse(sent.to_string().as_bytes()), [sent]);
}

/// Moved from the control plane's former parser (`control/src/sse.rs`).
#[test]
fn events_split_across_chunks_and_comments_are_skipped() {
    let mut p = SseParser::default();
    let mut events = Vec::new();
    p.feed(b": keepalive\n\nevent: config\nid: 3\nda", &mut events)
        .unwrap();
    assert!(events.is_empty());
    p.feed(b"ta: {\"a\":1}\n\n", &mut events).unwrap();
    assert_eq!(events, [event("config", Some("3"), "{\"a\":1}")]);
}

/// Moved from the sidecar's former parser (`proxy/src/control.rs`).
#[test]
fn sse_events_split_across_chunks_with_comments_and_crlf() {
    let mut p = SseParser::default();
    let mut events = Vec::new();
    p.feed(b": keepalive\n\nevent: con", &mut events).unwrap();
    assert!(events.is_empty());
    p.feed(
        b"fig\r\nid: 3\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: x\n\n",
        &mut events,
    )
    .unwrap();
    let names_and_data: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        names_and_data,
        [("config", "{\"a\":\n1}"), ("message", "x")]
    );
}
