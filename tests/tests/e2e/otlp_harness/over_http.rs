//! The collector's OTLP/HTTP side, driven by hyper POSTing protobuf: recorded
//! bodies (gzip too), scripted failures with `Retry-After`, partial success,
//! refused paths and media types, and a stop and return on the same port.

use http::{Request, StatusCode};
use meshtrace_tests::bound::within;
use meshtrace_tests::client;
use meshtrace_tests::otlp::{Answer, Failure, OtlpReceiver};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::{gzip, one_span, post, protobuf, WAIT};

#[tokio::test]
async fn http_export_is_recorded_and_answered_with_a_protobuf_response() {
    let collector = OtlpReceiver::start_http().await;
    assert_eq!(
        collector.endpoint(),
        format!("http://{}/v1/traces", collector.addr())
    );

    let rsp = post(
        collector.addr(),
        "/v1/traces",
        protobuf(one_span("GET /")),
        None,
    )
    .await;

    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(rsp.headers()["content-type"], "application/x-protobuf");
    ExportTraceServiceResponse::decode(rsp.into_body()).expect("a protobuf response");
    let spans = collector.wait_for_spans(1, WAIT).await;
    assert_eq!(spans[0].trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(!collector.exports()[0].gzip);
}

#[tokio::test]
async fn http_gzip_export_is_recorded_as_compressed() {
    let collector = OtlpReceiver::start_http().await;

    let body = gzip(&protobuf(one_span("zipped")));
    let rsp = post(collector.addr(), "/v1/traces", body, Some("gzip")).await;

    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(collector.wait_for_spans(1, WAIT).await[0].name(), "zipped");
    assert!(collector.exports()[0].gzip);
}

#[tokio::test]
async fn http_fail_next_answers_the_status_and_retry_after_then_succeeds() {
    let collector = OtlpReceiver::start_http().await;
    let failure = Failure::Http {
        status: 503,
        retry_after: Some(7),
    };
    collector.fail_next(1, failure);

    let failed = post(
        collector.addr(),
        "/v1/traces",
        protobuf(one_span("x")),
        None,
    )
    .await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed.headers()["retry-after"], "7");
    assert!(
        collector.spans().is_empty(),
        "a failed request stores nothing"
    );

    let ok = post(
        collector.addr(),
        "/v1/traces",
        protobuf(one_span("y")),
        None,
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(collector.wait_for_spans(1, WAIT).await[0].name(), "y");
    assert_eq!((collector.requests(), collector.attempts()), (1, 2));
}

#[tokio::test]
async fn http_reject_next_answers_partial_success() {
    let collector = OtlpReceiver::start_http().await;
    collector.reject_next(1, 1, "quota");

    let rsp = post(
        collector.addr(),
        "/v1/traces",
        protobuf(one_span("x")),
        None,
    )
    .await;

    assert_eq!(rsp.status(), StatusCode::OK);
    let response =
        ExportTraceServiceResponse::decode(rsp.into_body()).expect("a protobuf response");
    let partial = response.partial_success.expect("a partial_success");
    assert_eq!(
        (partial.rejected_spans, partial.error_message.as_str()),
        (1, "quota")
    );
    assert_eq!(collector.rejected_requests(), 1);
    assert_eq!(collector.spans().len(), 1);
}

#[tokio::test]
async fn http_refuses_other_paths_and_media_types_as_recorded_attempts() {
    let collector = OtlpReceiver::start_http().await;
    let body = protobuf(one_span("x"));

    let wrong_path = post(collector.addr(), "/v1/metrics", body.clone(), None).await;
    assert_eq!(wrong_path.status(), StatusCode::NOT_FOUND);
    let json = Request::post("/v1/traces")
        .header("content-type", "application/json")
        .body(client::full("{}"))
        .expect("a valid request");
    let wrong_type = client::collect(client::http1_request(collector.addr(), json).await).await;
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert!(collector.spans().is_empty());
    assert_eq!((collector.requests(), collector.attempts()), (0, 2));
    assert!(matches!(collector.exports()[1].answer, Answer::Refused(_)));
}

#[tokio::test]
async fn stopped_http_receiver_refuses_connections_and_comes_back_on_its_port() {
    let collector = OtlpReceiver::start_http().await;
    let addr = collector.addr();
    collector.shutdown().await;

    let refused = within(
        "a connect to a stopped collector",
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    assert!(
        refused.is_err(),
        "a stopped collector's port refuses connections"
    );

    let collector = OtlpReceiver::start_http_on(addr).await;
    let rsp = post(addr, "/v1/traces", protobuf(one_span("back")), None).await;
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(collector.wait_for_spans(1, WAIT).await[0].name(), "back");
}
