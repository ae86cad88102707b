use http::header::HeaderValue;

use super::*;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
static ONE: HeaderValue = HeaderValue::from_static("1");

fn rendered() -> Rendered {
    let mut r = Rendered::new();
    r.set(
        &TRACEPARENT,
        New::Bytes(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    r.set(&SAMPLED, New::Made(&ONE));
    r.set(&PARENT_ID, New::Decimal(2748));
    r
}

#[test]
fn headers_render_as_http1_field_lines_in_the_order_written() {
    let r = rendered();
    assert_eq!(
        std::str::from_utf8(r.lines()).unwrap(),
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
         x-b3-sampled: 1\r\n\
         x-datadog-parent-id: 2748\r\n"
    );
    let fields: Vec<_> = r.fields().collect();
    assert_eq!(
        fields,
        [
            (
                &b"traceparent"[..],
                &b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]
            ),
            (b"x-b3-sampled", b"1"),
            (b"x-datadog-parent-id", b"2748"),
        ]
    );
}

/// A value that could end the line (a tracestate or Datadog origin is the
/// caller's text) is not rendered, as the header map refuses it.
#[test]
fn a_value_that_is_no_field_value_or_none_renders_nothing() {
    let mut r = Rendered::new();
    r.set(&TRACEPARENT, New::Bytes(b"a\r\nx-injected: 1"));
    r.set(&SAMPLED, New::Bytes(b"\x7f"));
    r.set(&PARENT_ID, New::Remove);
    assert!(r.is_empty() && r.lines().is_empty());
    r.set(&SAMPLED, New::Bytes(b"tab\tand obs-text \xe9"));
    assert_eq!(r.lines(), b"x-b3-sampled: tab\tand obs-text \xe9\r\n");
}

#[test]
fn settle_moves_them_into_the_map_replacing_what_was_there() {
    let mut req = Request::new(());
    req.headers_mut()
        .insert(&SAMPLED, HeaderValue::from_static("0"));
    req.headers_mut()
        .append(&SAMPLED, HeaderValue::from_static("0"));
    req.extensions_mut().insert(rendered());
    settle(&mut req);
    assert!(req.extensions().get::<Rendered>().is_none());
    let h = req.headers();
    assert_eq!(h.len(), 3);
    assert_eq!(h.get_all(&SAMPLED).iter().collect::<Vec<_>>(), [&ONE]);
    assert_eq!(h[&PARENT_ID], "2748");
    // Nothing rendered: nothing to do.
    settle(&mut req);
    assert_eq!(req.headers().len(), 3);
}

/// The fields are read back from the lines: a value may hold `:` and spaces,
/// or nothing at all.
#[test]
fn fields_are_read_back_from_the_lines_as_they_were_set() {
    static STATE: HeaderName = HeaderName::from_static("tracestate");
    let mut r = Rendered::new();
    r.set(&STATE, New::Bytes(b"a=1: b , c=2"));
    r.set(&SAMPLED, New::Bytes(b""));
    r.set(&PARENT_ID, New::Bytes(b" :x"));
    let fields: Vec<_> = r.fields().collect();
    assert_eq!(
        fields,
        [
            (&b"tracestate"[..], &b"a=1: b , c=2"[..]),
            (b"x-b3-sampled", b""),
            (b"x-datadog-parent-id", b" :x"),
        ]
    );
}

/// Eight at a time, exactly `HeaderValue`'s rule: every byte, in every place
/// of a word and of the padded tail.
#[test]
fn field_values_are_checked_as_header_values_check_them() {
    for len in [1, 7, 8, 9, 15, 16, 17] {
        for at in 0..len {
            for b in 0..=255u8 {
                let mut v = vec![b'a'; len];
                v[at] = b;
                assert_eq!(
                    is_field_value(&v),
                    HeaderValue::from_bytes(&v).is_ok(),
                    "byte {b:#04x} at {at} of {len}"
                );
            }
        }
    }
    assert!(is_field_value(b""));
}
