"""Exposing a registry: an HTTP endpoint served from a thread, or pushes to a Pushgateway."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server

log = logging.getLogger("taskiq_dataflow.metrics")

DEFAULT_HOST = "127.0.0.1"  # an endpoint for everyone on the network is asked for: 0.0.0.0:PORT


def parse_address(text: str, what: str = "--metrics") -> tuple[str, int]:
    """`[HOST:]PORT` (`[::1]:9464` for IPv6) -> (host, port); port 0 picks a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    host = host.strip("[]") or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"{what} {text!r}: expected [HOST:]PORT such as 9464 or 0.0.0.0:9464"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: the port must be between 0 and 65535, got {port}")
    return host, port


class MetricsServer:
    """An HTTP endpoint serving one registry at /metrics (any path answers) from a daemon
    thread; `close()` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int = 0, host: str = DEFAULT_HOST):
        try:
            self._server, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def serve_metrics(
    registry: CollectorRegistry, port: int = 0, host: str = DEFAULT_HOST
) -> MetricsServer:
    return MetricsServer(registry, port, host)


def push_metrics(
    registry: CollectorRegistry,
    gateway: str,
    job: str = "taskiq-dataflow",
    grouping: Mapping[str, str] | None = None,
) -> None:
    """Push every metric of `registry` to the Pushgateway at `gateway` (replacing the job's
    group); raises OSError naming the gateway when it cannot be reached."""
    try:
        push_to_gateway(gateway, job=job, registry=registry, grouping_key=dict(grouping or {}))
    except OSError as exc:
        raise OSError(f"cannot push metrics to {gateway}: {exc}") from exc


class PeriodicPush:
    """Pushes a registry every `interval` seconds from a daemon thread, and once more when
    closed (a long-lived worker pool nobody scrapes); a failed push is logged, not fatal."""

    def __init__(
        self,
        registry: CollectorRegistry,
        gateway: str,
        job: str,
        interval: float = 15.0,
        grouping: Mapping[str, str] | None = None,
    ) -> None:
        self._args: tuple[Any, ...] = (registry, gateway, job, grouping)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-push", daemon=True)
        self._thread.start()

    def _push(self) -> None:
        try:
            push_metrics(*self._args)
        except OSError as exc:
            log.warning("%s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._push()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._push()
