"""The bridge's Prometheus metrics (``[bridge] metrics = "127.0.0.1:9465"``), served the way a
lane serves its own (``gate.field.metrics.MetricsServer``) and read at scrape time from the same
status the bridge writes to ``status.json`` and publishes on the bus, so the three never
disagree. Imported only when the config asks for metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gate.field.metrics import MetricsServer


def _flag(value: Any) -> float | None:
    return None if value is None else float(bool(value))


class BridgeCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        status = self.snapshot()
        yield GaugeMetricFamily("gate_bridge_up", "1 while the bridge runs", value=int(status.get("state") == "running"))
        broker = status.get("broker") or {}
        yield GaugeMetricFamily("gate_bridge_broker_connected", "1 while connected to the venue broker",
                                value=int(bool(broker.get("connected"))))
        yield CounterMetricFamily("gate_bridge_records", "lane records taken in (verified) since start",
                                  value=broker.get("records", 0))
        yield CounterMetricFamily("gate_bridge_records_refused", "lane records refused since start",
                                  value=broker.get("refused", 0))
        yield from self._services(status)
        yield from self._pulls(status.get("pretix") or {})
        yield from self._queue(status.get("queue") or {})
        yield self._dropped(status.get("failed_checkins") or {})
        bundle = (status.get("published") or {}).get("bundle") or {}
        yield GaugeMetricFamily("gate_bridge_bundle_version", "version of the last bundle published",
                                value=bundle.get("version", 0))

    @staticmethod
    def _services(status: dict[str, Any]) -> Iterator[Any]:
        """Reachable and authorised per service; left out while not known (nothing asked yet)."""
        reachable = GaugeMetricFamily("gate_bridge_service_reachable", "1 when the service answered the last request",
                                      labels=["service"])
        authorised = GaugeMetricFamily("gate_bridge_service_authorised", "1 when the service took the bridge's "
                                       "credentials at the last answer", labels=["service"])
        for name, contact in (status.get("services") or {}).items():
            if (value := _flag(contact.get("reachable"))) is not None:
                reachable.add_metric([name], value)
            if (value := _flag(contact.get("authorised"))) is not None:
                authorised.add_metric([name], value)
        yield reachable
        yield authorised

    @staticmethod
    def _pulls(pretix: dict[str, Any]) -> Iterator[Any]:
        at = GaugeMetricFamily("gate_bridge_pull_timestamp_seconds", "when each kind of pull was last tried",
                               labels=["kind"])
        ok = GaugeMetricFamily("gate_bridge_pull_ok", "1 when the last pull of the kind worked", labels=["kind"])
        ok_at = GaugeMetricFamily("gate_bridge_pull_success_timestamp_seconds", "when each kind last worked",
                                  labels=["kind"])
        for kind, pull in sorted((pretix.get("pulls") or {}).items()):
            at.add_metric([kind], pull.get("at") or 0)
            ok.add_metric([kind], int(bool(pull.get("ok"))))
            if pull.get("ok_at"):
                ok_at.add_metric([kind], pull["ok_at"])
        yield at
        yield ok
        yield ok_at

    @staticmethod
    def _queue(queue: dict[str, Any]) -> Iterator[Any]:
        jobs = GaugeMetricFamily("gate_bridge_jobs", "jobs in the queue by destination and state", labels=["sink", "state"])
        oldest = GaugeMetricFamily("gate_bridge_oldest_pending_seconds", "age of the oldest pending job (0: none)",
                                   labels=["sink"])
        lag = GaugeMetricFamily("gate_bridge_upload_lag_seconds", "event at the lane → accepted by the destination, of "
                                "the jobs accepted in the last window", labels=["sink", "quantile"])
        for sink, q in sorted(queue.items()):
            for state in ("pending", "done", "dead", "skipped"):
                jobs.add_metric([sink, state], q.get(state, 0))
            oldest.add_metric([sink], q.get("oldest_pending_s") or 0)
            for quantile, key in (("0.5", "lag_p50_s"), ("0.99", "lag_p99_s")):
                if q.get(key) is not None:
                    lag.add_metric([sink, quantile], q[key])
        yield jobs
        yield oldest
        yield lag


    @staticmethod
    def _dropped(intake: dict[str, Any]) -> CounterMetricFamily:
        """The lanes' refusals not queued as failed check-ins (gate.bridge.intake), per lane and
        why: ``rate`` (the lane's bucket was empty) or ``full`` (the queue's cap)."""
        dropped = CounterMetricFamily("gate_bridge_failed_checkins_dropped", "lane refusals not queued as pretix "
                                      "failed check-ins since start, by lane and why (rate, full)", labels=["gate", "why"])
        for gate, whys in sorted((intake.get("dropped") or {}).items()):
            for why, count in sorted(whys.items()):
                dropped.add_metric([gate, why], count)
        return dropped


def serve(listen: tuple[str, int], snapshot: Callable[[], dict[str, Any]]) -> MetricsServer:
    return MetricsServer(listen, BridgeCollector(snapshot))
