use super::*;

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(()).unwrap().into_parts().0
}

fn head_of(req: &Parts, exact: Option<u64>) -> String {
    let mut out = Vec::new();
    encode_head(req, request_framing(req, exact), &mut out);
    String::from_utf8(out).unwrap()
}

/// Parses `text` as the response to `method`, expecting a final head.
fn parse(text: &str, method: Method) -> (Response<()>, Framing, bool, BytesMut) {
    let mut buf = BytesMut::from(text.as_bytes());
    loop {
        match parse_head(&mut buf, &method, false).unwrap() {
            Head::Final(Final {
                head,
                body,
                keep_alive,
            }) => return (head, body, keep_alive, buf),
            Head::Interim => continue,
            Head::Partial => panic!("partial: {text:?}"),
        }
    }
}

fn parse_err(text: &str) -> ProtocolError {
    let mut buf = BytesMut::from(text.as_bytes());
    match parse_head(&mut buf, &Method::GET, false) {
        Err(error) => error,
        Ok(head) => panic!("parsed {head:?} from {text:?}"),
    }
}

/// The whole body `framing` decodes from `wire`, fed `step` bytes at a time,
/// and its trailers.
fn body(
    mut framing: Framing,
    wire: &[u8],
    step: usize,
) -> Result<(Vec<u8>, HeaderMap), ProtocolError> {
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    loop {
        let eof = fed == wire.len();
        match framing.decode(&mut buf, eof)? {
            Decoded::Data(bytes) => data.extend_from_slice(&bytes),
            Decoded::Trailers(trailers) => return Ok((data, trailers)),
            Decoded::End => return Ok((data, HeaderMap::new())),
            Decoded::More => {
                assert!(!eof, "asked for more after the end");
                let next = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn a_request_head_is_the_request_line_its_headers_and_a_blank_line() {
    let req = request(
        Method::GET,
        "/a?b=1",
        &[("host", "app"), ("x-b3-sampled", "1")],
    );
    assert_eq!(
        head_of(&req, Some(0)),
        "GET /a?b=1 HTTP/1.1\r\nhost: app\r\nx-b3-sampled: 1\r\n\r\n"
    );
}

/// The trace headers rendered for this hop follow the request's own, before
/// the framing header; the request's map no longer holds the stale ones.
#[test]
fn the_trace_headers_rendered_for_the_hop_are_part_of_the_head() {
    let mut req = request(
        Method::POST,
        "/",
        &[("host", "app"), ("traceparent", "stale"), ("b3", "0")],
    );
    let formats = [crate::propagation::Format::TraceContext];
    let rendered = crate::test_support::render_for_hop(&mut req.headers, &formats);
    req.extensions.insert(rendered);
    assert_eq!(
        head_of(&req, Some(2)),
        "POST / HTTP/1.1\r\nhost: app\r\n\
         traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01\r\n\
         content-length: 2\r\n\r\n"
    );
}

#[test]
fn request_bodies_are_framed_as_hypers_client_frames_them() {
    // A content-length the request carries is kept as it is.
    let req = request(Method::POST, "/", &[("content-length", "5")]);
    assert_eq!(request_framing(&req, None), Send::Length(5));
    assert_eq!(
        head_of(&req, None),
        "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n"
    );
    // A known length is announced; an empty POST says so, an empty GET does not.
    let req = request(Method::PUT, "/", &[]);
    assert_eq!(
        head_of(&req, Some(3)),
        "PUT / HTTP/1.1\r\ncontent-length: 3\r\n\r\n"
    );
    assert_eq!(
        head_of(&req, Some(0)),
        "PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
    );
    let req = request(Method::GET, "/", &[]);
    assert_eq!(head_of(&req, Some(0)), "GET / HTTP/1.1\r\n\r\n");
    // A stream is chunked, but a GET's is not sent.
    let req = request(Method::POST, "/", &[("transfer-encoding", "gzip")]);
    assert_eq!(
        head_of(&req, None),
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let req = request(Method::GET, "/", &[]);
    assert_eq!(request_framing(&req, None), Send::Length(0));
    let req = request(Method::POST, "/", &[("trailer", "grpc-status")]);
    assert_eq!(
        request_framing(&req, None),
        Send::Chunked { trailers: true }
    );
    // A content-length that disagrees with itself is not kept: the body's.
    let req = request(
        Method::POST,
        "/",
        &[("content-length", "3"), ("content-length", "4")],
    );
    assert_eq!(request_framing(&req, Some(7)), Send::Length(7));
}

#[test]
fn chunks_are_hex_sized_and_the_last_carries_declared_trailers_only() {
    let mut out = Vec::new();
    encode_chunk(&[b'x'; 26], &mut out);
    encode_chunk(b"", &mut out);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("x-other", HeaderValue::from_static("1"));
    let head = request(Method::POST, "/", &[("trailer", "Grpc-Status, x-none")]);
    let kept = declared_trailers(&trailer_names(&head.headers), trailers);
    encode_last_chunk(Some(&kept), &mut out);
    let expected = format!("1a\r\n{}\r\n0\r\ngrpc-status: 0\r\n\r\n", "x".repeat(26));
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn a_response_head_is_parsed_and_consumed_leaving_the_body() {
    let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello";
    let (head, framing, keep_alive, rest) = parse(text, Method::GET);
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.version(), Version::HTTP_11);
    let values: Vec<_> = head.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(framing, Framing::Length(5));
    assert!(keep_alive);
    assert_eq!(&rest[..], b"hello");
}

#[test]
fn a_partial_head_asks_for_more_and_an_endless_one_is_refused() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-a: 1\r\n"[..]);
    assert!(matches!(
        parse_head(&mut buf, &Method::GET, false),
        Ok(Head::Partial)
    ));
    assert_eq!(buf.len(), 25, "nothing consumed");
    let mut endless = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-filler: "[..]);
    endless.resize(MAX_HEAD + 1, b'a');
    assert!(matches!(
        parse_head(&mut endless, &Method::GET, false),
        Err(ProtocolError::HeadTooLarge)
    ));
    let mut many = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: 0\r\n").as_bytes());
    }
    assert!(matches!(
        parse_head(&mut many, &Method::GET, false),
        Err(ProtocolError::Head(httparse::Error::TooManyHeaders))
    ));
}

#[test]
fn interim_responses_are_skipped_but_an_unasked_101_is_refused() {
    let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let (head, framing, _, rest) = parse(text, Method::POST);
    assert_eq!(head.status(), StatusCode::NO_CONTENT);
    assert_eq!(framing, Framing::Empty);
    assert!(rest.is_empty());
    assert!(matches!(
        parse_err("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
        ProtocolError::UnexpectedUpgrade
    ));
}

#[test]
fn response_framing_follows_rfc_9112_section_6_3() {
    let framing = |text: &str, method: Method| parse(text, method).1;
    // No body, whatever the headers say.
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD),
        Framing::Empty
    );
    assert_eq!(
        framing(
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            Method::GET
        ),
        Framing::Empty
    );
    // Chunked wins over content-length; another coding reads to the end.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            Method::GET
        ),
        Framing::Chunked(Chunked::default())
    );
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            Method::GET
        ),
        Framing::Eof
    );
    // The last field's last coding decides, whatever the names' case.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTRANSFER-ENCODING: gzip\r\n\r\n",
            Method::GET
        ),
        Framing::Eof
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", Method::GET),
        Framing::Length(3)
    );
    // Repeated equal lengths are one length; none reads to the end.
    assert_eq!(
        framing(
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n",
            Method::GET
        ),
        Framing::Length(3)
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\n\r\n", Method::GET),
        Framing::Eof
    );
}

#[test]
fn a_response_with_a_bad_length_or_coding_is_refused() {
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 3,4\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length:\r\n\r\n",
    ] {
        assert!(
            matches!(parse_err(bad), ProtocolError::ContentLength),
            "{bad:?}"
        );
    }
    assert!(matches!(
        parse_err("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
        ProtocolError::TransferEncoding10
    ));
    assert!(matches!(
        parse_err("HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\n\r\n"),
        ProtocolError::Head(_)
    ));
    assert!(matches!(
        parse_err("HTTP/2 200 OK\r\n\r\n"),
        ProtocolError::Head(_)
    ));
}

#[test]
fn keep_alive_is_http_1_1_without_close_or_http_1_0_with_keep_alive() {
    let alive = |text: &str| parse(text, Method::GET).2;
    assert!(alive("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(!alive(
        "HTTP/1.1 200 OK\r\nconnection: foo, Close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!alive("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(alive(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
    // A body read to the connection's end ends the connection.
    assert!(!alive("HTTP/1.1 200 OK\r\n\r\n"));
}

#[test]
fn a_sized_body_ends_at_its_length_and_is_incomplete_if_cut_short() {
    for step in [1, 3, 100] {
        let (data, _) = body(Framing::Length(5), b"hello", step).unwrap();
        assert_eq!(data, b"hello");
    }
    assert!(matches!(
        body(Framing::Length(6), b"hello", 2),
        Err(ProtocolError::Incomplete)
    ));
    // Bytes past the length are left for whoever reads next.
    let mut framing = Framing::Length(2);
    let mut buf = BytesMut::from(&b"hi HTTP"[..]);
    assert_eq!(
        framing.decode(&mut buf, false).unwrap(),
        Decoded::Data(Bytes::from_static(b"hi"))
    );
    assert_eq!(framing.decode(&mut buf, false).unwrap(), Decoded::End);
    assert_eq!(&buf[..], b" HTTP");
}

#[test]
fn a_body_without_a_length_ends_with_the_connection() {
    let (data, _) = body(Framing::Eof, b"all of it", 4).unwrap();
    assert_eq!(data, b"all of it");
}

#[test]
fn a_chunked_body_is_decoded_in_any_split_with_its_trailers() {
    let wire = b"5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
    for step in [1, 2, 7, wire.len()] {
        let (data, trailers) = body(Framing::Chunked(Chunked::default()), wire, step).unwrap();
        assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "ok");
    }
    let (data, trailers) = body(
        Framing::Chunked(Chunked::default()),
        b"3\r\nabc\r\n0\r\n\r\n",
        1,
    )
    .unwrap();
    assert_eq!(data, b"abc");
    assert!(trailers.is_empty());
}

#[test]
fn a_malformed_or_oversized_chunked_body_is_refused() {
    let chunked = |wire: &[u8]| body(Framing::Chunked(Chunked::default()), wire, 3);
    for bad in [
        &b"x\r\n"[..],
        b"5\r\nhello!\r\n0\r\n\r\n",
        b"5 junk\r\nhello\r\n0\r\n\r\n",
        b"11111111111111111\r\n",
        b"0\r\nbad trailer\r\n\r\n",
    ] {
        assert!(chunked(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    assert!(matches!(
        chunked(b"5\r\nhel"),
        Err(ProtocolError::Incomplete)
    ));
    let mut long = b"1;".to_vec();
    long.extend(std::iter::repeat_n(b'e', MAX_EXTENSIONS as usize + 64));
    long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert!(matches!(chunked(&long), Err(ProtocolError::Extensions)));
    let mut many = Vec::new();
    for _ in 0..=MAX_EXTENSIONS / 8 {
        many.extend_from_slice(b"1;aaaaaaaaaa\r\nx\r\n");
    }
    many.extend_from_slice(b"0\r\n\r\n");
    assert!(matches!(chunked(&many), Err(ProtocolError::Extensions)));
    let mut trailers = b"0\r\n".to_vec();
    for i in 0..2000 {
        trailers.extend_from_slice(format!("x-t{i}: 0123456789\r\n").as_bytes());
    }
    trailers.extend_from_slice(b"\r\n");
    assert!(matches!(
        chunked(&trailers),
        Err(ProtocolError::TrailersTooLarge | ProtocolError::Head(_))
    ));
}
