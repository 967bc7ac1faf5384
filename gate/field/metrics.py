"""Optional Prometheus metrics on a loopback address (``[status] metrics = "127.0.0.1:9464"``).

prometheus_client serves them; what they say is read at scrape time from the same snapshot that
``gate status`` shows, so the two never disagree. Decision latency is a histogram fed by the
decision loop. Imported only when the config asks for metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gate.decision import MODES

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class _LaneCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        status = self.snapshot()
        yield GaugeMetricFamily("gate_loop_responsive", "1 when the decision loop answered this scrape",
                                value=0 if "problem" in status else 1)
        yield GaugeMetricFamily("gate_uptime_seconds", "seconds since the daemon started", value=status.get("uptime", 0))
        if "mode" not in status:
            return
        mode = GaugeMetricFamily("gate_mode", "the lane's mode (1 for the current one)", labels=["mode"])
        for name in MODES:
            mode.add_metric([name], 1 if status["mode"] == name else 0)
        yield mode
        yield GaugeMetricFamily("gate_emergency", "1 while the fire loop is open", value=int(bool(status.get("emergency"))))
        yield GaugeMetricFamily("gate_clock_synchronized", "1 when the wall clock is NTP-synchronized",
                                value=int(bool(status.get("clock", {}).get("synchronized"))))
        decisions = CounterMetricFamily("gate_decisions", "decisions since start, by reason", labels=["reason"])
        events = CounterMetricFamily("gate_events", "other lane events since start", labels=["event"])
        for name, count in sorted(status.get("counters", {}).items()):
            if name == "accepted":
                decisions.add_metric(["ok"], count)
            elif name.startswith("denied."):
                decisions.add_metric([name.removeprefix("denied.")], count)
            else:
                events.add_metric([name], count)
        yield decisions
        yield events
        readers = GaugeMetricFamily("gate_reader_up", "1 when a configured reader is open", labels=["reader"])
        for name, reader in status.get("readers", {}).items():
            readers.add_metric([name], 0 if "problem" in reader else int(reader.get("connected", True)))
        yield readers
        bundle = status.get("bundle", {})
        yield GaugeMetricFamily("gate_bundle_version", "version of the trust bundle held", value=bundle.get("version", 0))
        yield GaugeMetricFamily("gate_bundle_issued_timestamp_seconds", "when the held bundle was signed",
                                value=bundle.get("issued_at", 0))
        yield GaugeMetricFamily("gate_ledger_seq", "this lane's last ledger sequence number", value=status.get("ledger_seq", 0))
        sync = status.get("sync")
        if sync:
            yield GaugeMetricFamily("gate_sync_connected", "1 while connected to the venue broker", value=int(sync["connected"]))
            yield GaugeMetricFamily("gate_sync_outbox", "records the broker has not acknowledged", value=sync["outbox"])
            yield GaugeMetricFamily("gate_sync_conflicts", "tickets admitted by two cut-off gates", value=sync["conflicts"])


class MetricsServer:
    """prometheus_client's endpoint on ``listen`` for ``collector`` (read at scrape time); also
    what gate bridge serves its own metrics with."""

    def __init__(self, listen: tuple[str, int], collector: Collector) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        host, port = listen
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Metrics(MetricsServer):
    def __init__(self, listen: tuple[str, int], snapshot: Callable[[], dict[str, Any]]) -> None:
        super().__init__(listen, _LaneCollector(snapshot))
        self.latency = Histogram("gate_decision_latency_seconds", "scan available → decided (incl. durable write)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def observe(self, kind: str, payload: dict[str, Any]) -> None:
        """A decision loop listener."""
        if kind == "decision" and payload.get("latency_ms") is not None:
            self.latency.observe(payload["latency_ms"] / 1000)
