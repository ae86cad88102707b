#!/usr/bin/env python3
"""Sends a trace context made by a real tracer library through the sidecar and
reads back, with the same library, the context the application received.

Run by tests/tests/e2e/interop.rs with the repository's venv (scripts/test-all.sh
creates it from tests/python/requirements.txt):

    interop.py --lib otel    --proxy HOST:PORT --cases b3single,b3multi,jaeger,tracecontext
    interop.py --lib ddtrace --proxy HOST:PORT --cases datadog,tracecontext,b3multi

For every case (one wire format) and every variant of it (sampling decisions),
the script builds a known parent context with the library's own API, injects it
with the library's propagator for that format only, sends `GET /interop/<case>`
to the sidecar's inbound listener, rebuilds the request headers the echo app
received from its `x-echo-header-*` response headers, and extracts them with the
same library and format. Only that format's headers are handed to the extractor:
the sidecar writes every format toward the app, and a library that prefers
another header (OpenTelemetry's B3 reads `b3` before `X-B3-*`) would otherwise
test the wrong one.

One JSON line per case and variant on stdout:

    {"lib", "case", "variant",
     "sent":     {"trace_id", "span_id", "sampled", ...},
     "received": {"valid", "trace_id", "span_id", "sampled", ...},
     "sent_headers": {...}, "app_headers": {...}}

Ids are lower-case hex, 32 and 16 digits. ddtrace adds `priority` (its sampling
priority) and OpenTelemetry's tracecontext case adds `trace_flags` (two hex
digits). The script only reports; the Rust test decides what must hold. Any
exception ends it with a non-zero status and a message naming the case.
"""

import argparse
import json
import os
import secrets
import sys
import traceback
import urllib.request

TIMEOUT_SECONDS = 10

# The headers each format owns (lower case; a trailing `*` is a prefix).
FORMAT_HEADERS = {
    "tracecontext": ["traceparent", "tracestate"],
    "b3single": ["b3"],
    "b3multi": ["x-b3-*"],
    "jaeger": ["uber-trace-id", "uberctx-*"],
    "datadog": ["x-datadog-*"],
}

ECHO_PREFIX = "x-echo-header-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", required=True, choices=["otel", "ddtrace"])
    parser.add_argument("--proxy", required=True, help="the sidecar's inbound HOST:PORT")
    parser.add_argument("--cases", required=True, help="comma-separated formats")
    args = parser.parse_args()

    library = OTEL if args.lib == "otel" else DDTRACE
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in library["cases"]]
    if unknown or not cases:
        parser.error(f"--lib {args.lib} supports --cases {','.join(library['cases'])}, not {unknown or cases}")

    case, variant = "-", "-"
    try:
        lib = library["load"]()
        for case in cases:
            for variant, sent in library["variants"](case):
                sent_headers = lib.inject(case, sent)
                app_headers = send(args.proxy, case, sent_headers)
                received = lib.extract(case, only_format(case, app_headers))
                line = {
                    "lib": args.lib,
                    "case": case,
                    "variant": variant,
                    "sent": lib.describe(sent),
                    "received": received,
                    "sent_headers": sent_headers,
                    "app_headers": app_headers,
                }
                print(json.dumps(line, sort_keys=True), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure must end the run loudly
        traceback.print_exc()
        sys.exit(f"interop.py --lib {args.lib}: case {case}, variant {variant}: {type(e).__name__}: {e}")


# --- the wire ------------------------------------------------------------------


def send(proxy, case, headers):
    """GET /interop/<case> through the sidecar; the headers the app received."""
    # An empty ProxyHandler: an http_proxy in the environment must not reroute
    # the request around the sidecar.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://{proxy}/interop/{case}", headers=headers)
    with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"the sidecar answered {response.status}")
        received = {}
        for name, value in response.headers.items():
            name = name.lower()
            if name.startswith(ECHO_PREFIX):
                name = name[len(ECHO_PREFIX):]
                # A repeated header is combined as HTTP allows; a duplicated trace
                # header then fails to parse, visibly.
                received[name] = f"{received[name]},{value}" if name in received else value
        response.read()
    if not received:
        raise RuntimeError("the response carries no x-echo-header-*: is the echo app behind the sidecar?")
    return received


def only_format(case, headers):
    """The subset of `headers` that belongs to `case`'s format."""
    owned = FORMAT_HEADERS[case]

    def belongs(name):
        return any(name.startswith(h[:-1]) if h.endswith("*") else name == h for h in owned)

    return {name: value for name, value in headers.items() if belongs(name)}


def hex_ids(trace_id, span_id):
    return {"trace_id": f"{trace_id:032x}", "span_id": f"{span_id:016x}"}


# --- OpenTelemetry -------------------------------------------------------------


class Otel:
    """OpenTelemetry's API and propagators; contexts are `SpanContext`s."""

    def __init__(self):
        from opentelemetry import trace
        from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
        from opentelemetry.propagators.jaeger import JaegerPropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.trace = trace
        self.propagators = {
            "b3single": B3SingleFormat(),
            "b3multi": B3MultiFormat(),
            "jaeger": JaegerPropagator(),
            "tracecontext": TraceContextTextMapPropagator(),
        }

    def inject(self, case, span_context):
        headers = {}
        if span_context.trace_flags & 0x02:
            # Level 2's random flag: OpenTelemetry Python writes only 00 / 01, so
            # this variant is written by hand, as a Level 2 caller would.
            headers["traceparent"] = "00-{trace_id}-{span_id}-{flags:02x}".format(
                **hex_ids(span_context.trace_id, span_context.span_id), flags=span_context.trace_flags
            )
            return headers
        parent = self.trace.set_span_in_context(self.trace.NonRecordingSpan(span_context))
        self.propagators[case].inject(headers, context=parent)
        return headers

    def extract(self, case, headers):
        context = self.propagators[case].extract(headers)
        span_context = self.trace.get_current_span(context).get_span_context()
        return {"valid": span_context.is_valid, **self.describe(span_context)}

    def describe(self, span_context):
        return {
            **hex_ids(span_context.trace_id, span_context.span_id),
            "sampled": span_context.trace_flags.sampled,
            "trace_flags": f"{span_context.trace_flags:02x}",
        }


def otel_variants(case):
    """A sampled and an unsampled parent; tracecontext adds Level 2's random flag."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    flags = {"sampled": 0x01, "not-sampled": 0x00}
    if case == "tracecontext":
        flags["sampled-random"] = 0x03
    ids = RandomIdGenerator()
    for variant, trace_flags in flags.items():
        trace_id = ids.generate_trace_id()
        while trace_id >> 64 == 0:  # exercise 128-bit handling every time
            trace_id = ids.generate_trace_id()
        span_context = trace.SpanContext(
            trace_id=trace_id,
            span_id=ids.generate_span_id(),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace_flags),
        )
        yield variant, span_context


OTEL = {
    "cases": ["b3single", "b3multi", "jaeger", "tracecontext"],
    "load": Otel,
    "variants": otel_variants,
}


# --- ddtrace -------------------------------------------------------------------


class Ddtrace:
    """ddtrace's `HTTPPropagator`; contexts are `ddtrace.trace.Context`s.

    `HTTPPropagator.inject` / `extract` take no style argument: they use the
    styles configured at start-up. To inject and extract one format per case the
    script sets ddtrace's (private) `config._propagation_style_inject` and
    `_propagation_style_extract` to that one style around each call.
    """

    def __init__(self):
        # ddtrace reads its configuration when imported.
        os.environ["DD_TRACE_ENABLED"] = "false"
        os.environ["DD_TRACE_PROPAGATION_STYLE"] = "datadog,tracecontext,b3multi"
        os.environ.pop("DD_TRACE_PROPAGATION_STYLE_INJECT", None)
        os.environ.pop("DD_TRACE_PROPAGATION_STYLE_EXTRACT", None)
        from ddtrace import config
        from ddtrace.propagation.http import HTTPPropagator
        from ddtrace.trace import Context

        for attr in ("_propagation_style_inject", "_propagation_style_extract"):
            if not isinstance(getattr(config, attr, None), list):
                raise RuntimeError(f"this ddtrace has no list config.{attr}: cannot pick one style per case")
        self.config = config
        self.propagator = HTTPPropagator
        self.Context = Context

    def inject(self, case, context):
        headers = {}
        self.config._propagation_style_inject = [case]
        self.propagator.inject(context, headers)
        return headers

    def extract(self, case, headers):
        self.config._propagation_style_extract = [case]
        context = self.propagator.extract(headers)
        valid = bool(context.trace_id and context.span_id)
        return {"valid": valid, **self.describe(context)}

    def describe(self, context):
        priority = context.sampling_priority
        return {
            **hex_ids(context.trace_id or 0, context.span_id or 0),
            "sampled": priority is not None and priority > 0,
            "priority": None if priority is None else int(priority),
        }


# ddtrace's sampling priorities: USER_REJECT -1, AUTO_REJECT 0, AUTO_KEEP 1, USER_KEEP 2.
DDTRACE_PRIORITIES = {"user-keep": 2, "auto-keep": 1, "auto-reject": 0, "user-reject": -1}


def ddtrace_variants(case):
    """Every sampling priority with a 128-bit trace id; Datadog adds a 64-bit one."""
    from ddtrace.trace import Context

    def random_id(bits):
        value = 0
        while value >> (bits - 1) == 0:  # the top bit set: all of the width is used
            value = secrets.randbits(bits)
        return value

    variants = [(name, priority, 128) for name, priority in DDTRACE_PRIORITIES.items()]
    if case == "datadog":
        variants.append(("auto-keep-64bit", 1, 64))
    for name, priority, bits in variants:
        context = Context(trace_id=random_id(bits), span_id=random_id(64), sampling_priority=priority)
        yield name, context


DDTRACE = {
    "cases": ["datadog", "tracecontext", "b3multi"],
    "load": Ddtrace,
    "variants": ddtrace_variants,
}


if __name__ == "__main__":
    main()
