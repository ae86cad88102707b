#!/usr/bin/env python3
"""One application of the mixed fleet: a real tracer library behind a sidecar.

Run by tests/tests/e2e/mixed_fleet.rs (through tests/src/fleet.rs) with the venv
made from tests/python/requirements.txt:

    fleet_app.py --name app1 --lib otel-b3multi --listen 127.0.0.1:0 \
                 --next-url http://127.0.0.1:PORT --next-host app2:80
    fleet_app.py --name app2 --lib ddtrace --listen 127.0.0.1:0 --next-url - --next-host app3:80
    fleet_app.py --name app3 --lib otel-w3c --listen 127.0.0.1:0

Libraries (each propagates with its own format only, as a real service would):

- `otel-b3multi`: OpenTelemetry SDK, `B3MultiFormat` only, `ParentBased(ALWAYS_ON)`.
- `otel-w3c`: OpenTelemetry SDK, `TraceContextTextMapPropagator` only, same sampler.
- `ddtrace`: ddtrace with `DD_TRACE_ENABLED=false` and its default propagation
  styles, or `--style` (`DD_TRACE_PROPAGATION_STYLE`). With tracing disabled ddtrace
  still gives spans ids and keeps the extracted sampling priority; nothing is sent
  to an agent. Its effective styles are reported in every hop (`lib_config`).

The environment cannot change a library's behaviour: every `DD_*` and `OTEL_*`
variable is dropped before a library is imported, then only what the flags say
is set (plus ddtrace's telemetry and remote configuration turned off, so the app
opens no connection of its own).

Protocol with the harness: once the listener is bound the app prints
`LISTENING <port>`. With `--next-url -` it then reads the next hop's URL (its
sidecar's outbound listener, which exists only once the sidecar is started in
front of this port) as the first line of stdin, and prints `NEXT <url>`. Only then
does it serve.

Every `GET /chain` or `GET /chain/<tag>`: extract the context from the request
headers with the library, start the app's own span as a child of it, call the
next hop (same path, `Host: <next-host>`) with only what the library injected
into a fresh header dict (incoming headers are never copied), and answer 200:

    {"hops": [{"app", "lib", "lib_config",
               "received_headers": {...trace-related request headers, lower case...},
               "extracted": {"valid", "trace_id", "span_id", "sampled", "priority"?},
               "span": {"trace_id", "span_id", "sampled", "priority"?},
               "sent_headers": {...}},
              ...the next hop's hops...]}

Ids are lower-case hex, 32 and 16 digits. An exception answers 500 with the
traceback; a next hop that fails or answers non-200 makes a 502 with the reason
(and the next hop's body). The app only reports: the Rust test decides.
"""

import argparse
import http.client
import json
import os
import sys
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NEXT_HOP_TIMEOUT_SECONDS = 10

# Request headers reported in `received_headers` (a trailing `*` is a prefix).
TRACE_HEADERS = [
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-b3-*",
    "x-datadog-*",
    "uber-trace-id",
    "uberctx-*",
    "x-meshtrace-*",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the app's name in its hop (app1, app2, …)")
    parser.add_argument("--lib", required=True, choices=sorted(LIBRARIES))
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to bind")
    parser.add_argument("--next-url", help="http://HOST:PORT of the next hop, or - to read it from stdin")
    parser.add_argument("--next-host", help="the Host header for the next hop (its sidecar routes on it)")
    parser.add_argument("--style", help="ddtrace only: DD_TRACE_PROPAGATION_STYLE (default: ddtrace's own)")
    args = parser.parse_args()
    if bool(args.next_url) != bool(args.next_host):
        parser.error("--next-url and --next-host go together")
    if args.style and args.lib != "ddtrace":
        parser.error("--style is for --lib ddtrace")

    library = LIBRARIES[args.lib](args.style)
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.app = App(args.name, args.lib, library, args.next_host)
    print(f"LISTENING {server.server_address[1]}", flush=True)

    next_url = args.next_url
    if next_url == "-":
        next_url = sys.stdin.readline().strip()
        if not next_url:
            sys.exit(f"{args.name}: stdin closed before the next hop's URL arrived")
        print(f"NEXT {next_url}", flush=True)
    if next_url:
        parsed = urllib.parse.urlsplit(next_url)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            sys.exit(f"{args.name}: --next-url must be http://HOST:PORT, not {next_url!r}")
        server.app.next_addr = (parsed.hostname, parsed.port)
    server.serve_forever()


# --- the app -------------------------------------------------------------------


class NextHopError(Exception):
    """The next hop could not be reached or did not answer 200."""


class App:
    """What one app does for a request, independent of the library."""

    def __init__(self, name, lib, library, next_host):
        self.name = name
        self.lib = lib
        self.library = library
        self.next_host = next_host
        self.next_addr = None

    def chain(self, path, headers):
        received = trace_headers(headers)
        hop, sent, finish = self.library.handle(headers)
        try:
            hops = self.call_next(path, sent) if self.next_addr else []
        finally:
            finish()
        hop = {
            "app": self.name,
            "lib": self.lib,
            "lib_config": self.library.config,
            "received_headers": received,
            **hop,
            "sent_headers": sent,
        }
        return [hop, *hops]

    def call_next(self, path, sent):
        host, port = self.next_addr
        connection = http.client.HTTPConnection(host, port, timeout=NEXT_HOP_TIMEOUT_SECONDS)
        try:
            # A `Host` in the headers makes http.client send it instead of its own.
            connection.request("GET", path, headers={**sent, "Host": self.next_host})
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
        except OSError as e:
            raise NextHopError(f"{self.name} -> {self.next_host} via {host}:{port}: {type(e).__name__}: {e}") from e
        finally:
            connection.close()
        if response.status != 200:
            raise NextHopError(f"{self.name} -> {self.next_host} answered {response.status}:\n{body}")
        return json.loads(body)["hops"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        app = self.server.app
        path = urllib.parse.urlsplit(self.path).path
        if path != "/chain" and not path.startswith("/chain/"):
            self.answer(404, "text/plain", f"{app.name}: no route for {path}\n")
            return
        try:
            hops = app.chain(path, self.lower_case_headers())
        except NextHopError as e:
            self.answer(502, "text/plain", f"{app.name}: next hop failed: {e}\n")
            return
        except Exception:  # noqa: BLE001 - every failure must reach the test
            self.answer(500, "text/plain", f"{app.name}:\n{traceback.format_exc()}")
            return
        self.answer(200, "application/json", json.dumps({"hops": hops}, sort_keys=True))

    def lower_case_headers(self):
        """Every request header, lower case; a repeated one combined with `,` as
        HTTP allows (a duplicated trace header then fails to parse, visibly)."""
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        return headers

    def answer(self, status, content_type, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        sys.stderr.write(f"{self.server.app.name}: {format % args}\n")


def trace_headers(headers):
    def related(name):
        return any(name.startswith(h[:-1]) if h.endswith("*") else name == h for h in TRACE_HEADERS)

    return {name: value for name, value in sorted(headers.items()) if related(name)}


def hex_ids(trace_id, span_id):
    return {"trace_id": f"{trace_id or 0:032x}", "span_id": f"{span_id or 0:016x}"}


def clean_environment():
    """No inherited `DD_*` / `OTEL_*` setting may change a library's behaviour."""
    for name in list(os.environ):
        if name.startswith(("DD_", "OTEL_")):
            del os.environ[name]


# --- OpenTelemetry -------------------------------------------------------------


class Otel:
    """The OpenTelemetry SDK with one propagator and `ParentBased(ALWAYS_ON)`."""

    def __init__(self, propagator, style):
        clean_environment()
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
        from opentelemetry.version import __version__

        self.trace = trace
        self.propagator = propagator()
        provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
        self.tracer = provider.get_tracer("fleet_app")
        self.config = {
            "version": __version__,
            "propagator": type(self.propagator).__name__,
            "fields": sorted(self.propagator.fields),
            "sampler": provider.sampler.get_description(),
        }

    def handle(self, headers):
        context = self.propagator.extract(headers)
        parent = self.trace.get_current_span(context).get_span_context()
        span = self.tracer.start_span("GET /chain", context=context, kind=self.trace.SpanKind.SERVER)
        sent = {}
        self.propagator.inject(sent, context=self.trace.set_span_in_context(span))
        hop = {
            "extracted": {"valid": parent.is_valid, **self.describe(parent)},
            "span": self.describe(span.get_span_context()),
        }
        return hop, sent, span.end

    @staticmethod
    def describe(span_context):
        return {**hex_ids(span_context.trace_id, span_context.span_id), "sampled": span_context.trace_flags.sampled}


def otel_b3multi(style):
    from opentelemetry.propagators.b3 import B3MultiFormat

    return Otel(B3MultiFormat, style)


def otel_w3c(style):
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return Otel(TraceContextTextMapPropagator, style)


# --- ddtrace -------------------------------------------------------------------


class Ddtrace:
    """ddtrace with tracing disabled: `HTTPPropagator` and unexported spans.

    `tracer.start_span(child_of=context, activate=False)` makes a child of the
    extracted context (same trace id, the extracted span id as parent, the
    extracted sampling priority) even with `DD_TRACE_ENABLED=false`; `activate`
    stays off because requests run on several threads. The span, not its context,
    is handed to `HTTPPropagator.inject`, as ddtrace's docs prefer: a span without
    a priority is sampled first.
    """

    def __init__(self, style):
        clean_environment()
        # ddtrace reads its configuration when imported.
        os.environ["DD_TRACE_ENABLED"] = "false"
        os.environ["DD_INSTRUMENTATION_TELEMETRY_ENABLED"] = "false"
        os.environ["DD_REMOTE_CONFIGURATION_ENABLED"] = "false"
        if style:
            os.environ["DD_TRACE_PROPAGATION_STYLE"] = style
        import ddtrace
        from ddtrace import config
        from ddtrace.propagation.http import HTTPPropagator
        from ddtrace.trace import tracer

        self.tracer = tracer
        self.propagator = HTTPPropagator
        self.config = {
            "version": ddtrace.__version__,
            "tracer_enabled": tracer.enabled,
            "propagation_style_env": style,
            "propagation_style_extract": list(config._propagation_style_extract),
            "propagation_style_inject": list(config._propagation_style_inject),
            "propagation_extract_first": config._propagation_extract_first,
        }

    def handle(self, headers):
        context = self.propagator.extract(headers)
        # Described before the span exists: a root span shares this context, and
        # injecting samples it.
        valid = bool(context.trace_id and context.span_id)
        extracted = {"valid": valid, **self.describe(context.trace_id, context.span_id, context)}
        span = self.tracer.start_span("fleet.chain", child_of=context, activate=False)
        sent = {}
        self.propagator.inject(span, sent)
        hop = {"extracted": extracted, "span": self.describe(span.trace_id, span.span_id, span.context)}
        return hop, sent, span.finish

    @staticmethod
    def describe(trace_id, span_id, context):
        priority = context.sampling_priority
        return {
            **hex_ids(trace_id, span_id),
            "sampled": None if priority is None else priority > 0,
            "priority": None if priority is None else int(priority),
        }


LIBRARIES = {
    "otel-b3multi": otel_b3multi,
    "otel-w3c": otel_w3c,
    "ddtrace": Ddtrace,
}


if __name__ == "__main__":
    main()
