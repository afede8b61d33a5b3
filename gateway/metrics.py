"""Prometheus metrics with prometheus_client, one registry per app.

Calls, denials and their latency are counted where they are audited (gateway.audit); the server
gauges (ready, sessions, requests in flight, upstream starts) and the counters the transports keep
in `Gateway.metrics` are read when scraped, by a collector, so nothing has to keep them in sync.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.protocol.versions import CLIENT_METHODS
from gateway.runtime import RuntimeError_
from gateway.web import Gateway
from nmcp.model.vocabulary import Phase

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _ServerCollector(Collector):
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        states = gw.runtime.list_servers()
        bridges = list(gw.hub.bridges.values())
        ready = GaugeMetricFamily("nmcp_gateway_server_ready", "1 when the server is Ready.",
                                  labels=["server", "phase"])
        sessions = GaugeMetricFamily("nmcp_gateway_sessions", "Open client sessions.", labels=["server"])
        in_flight = GaugeMetricFamily("nmcp_gateway_requests_in_flight",
                                      "Client requests waiting for the server's answer.", labels=["server"])
        starts = CounterMetricFamily("nmcp_gateway_upstream_starts", "Times the gateway initialized an upstream.",
                                     labels=["server"])
        for state in states:
            name = str(state.ref)
            ready.add_metric([name, state.phase], 1.0 if state.phase == Phase.READY else 0.0)
            sessions.add_metric([name], float(gw.hub.sessions_of(state.ref)))
            in_flight.add_metric([name], float(sum(len(b.pending) for b in bridges if b.ref == state.ref)))
            starts.add_metric([name], float(sum(b.restarts for b in bridges if b.ref == state.ref)))
        yield from (ready, sessions, in_flight, starts)
        families: dict[str, CounterMetricFamily] = {}
        for (name, labels), value in sorted(gw.metrics.counters.items()):
            family = families.get(name)
            if family is None:
                family = families[name] = CounterMetricFamily(name, name.replace("_", " "),
                                                              labels=[k for k, _ in labels])
            family.add_metric([v for _, v in labels], value)
        yield from families.values()


class Telemetry:
    """The app's registry: MCP requests and REST operations by server, method and outcome.

    Clients choose the server names in URLs and the method names in messages: a name that is no
    server's is labelled "" and a method MCP does not define "other", so that no client can make
    the registry grow without bound.
    """

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_ServerCollector(gw))
        self.calls = Counter("nmcp_gateway_calls", "MCP requests and REST operations, by outcome.",
                             ["server", "method", "outcome"], registry=self.registry)
        self.denials = Counter("nmcp_gateway_denials", "Requests refused for want of identity or permission.",
                               ["server", "method", "reason"], registry=self.registry)
        self.latency = Histogram("nmcp_gateway_call_duration_seconds",
                                 "Seconds from a request's arrival to its response (headers, for a stream).",
                                 ["server", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)

        # The series of each (server, method, operation, outcome), with their labels: `labels()`
        # looks them up under a lock on every call. Only keys of known labels are kept here.
        self._series: dict[tuple[str, str, str, str], tuple[Any, Any, str, str]] = {}

    def observe(self, event: Mapping[str, Any]) -> None:
        """One audit event (gateway.audit): an answered MCP message (`method`) or REST operation
        (`operation`, one of the gateway's own)."""
        server, method, operation, outcome = event["server"], event["method"], event["operation"], event["outcome"]
        key = (server, method, operation, outcome)
        series = self._series.get(key)
        if series is None:
            label_server = server if self._serves(server) else ""
            label_method = (method if method in CLIENT_METHODS else "other") if method else operation
            series = (self.calls.labels(label_server, label_method, outcome),
                      self.latency.labels(label_server, label_method), label_server, label_method)
            if (label_server, label_method) == (server, method or operation):
                self._series[key] = series
        calls, latency, label_server, label_method = series
        calls.inc()
        if outcome == "denied":
            self.denials.labels(label_server, label_method, event.get("reason", "")).inc()
        latency.observe(event["durationMs"] / 1000)

    def _serves(self, server: str) -> bool:
        namespace, _, name = server.rpartition("/")
        try:
            self.gw.runtime.resolve(name, namespace or None)
        except RuntimeError_:
            return False
        return True

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
