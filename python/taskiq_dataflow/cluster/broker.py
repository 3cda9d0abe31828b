"""DataflowNatsBroker: a taskiq NATS broker that also carries the dataflow cluster's settings."""

from __future__ import annotations

import os
from typing import Any

from taskiq_nats import NatsBroker

from .protocol import DEFAULT_CODEC, Codec

NATS_URL_ENV = "DATAFLOW_NATS_URL"


def default_servers() -> str:
    return os.environ.get(NATS_URL_ENV, "nats://127.0.0.1:4222")


class DataflowNatsBroker(NatsBroker):
    """A taskiq broker over NATS (`@broker.task`, `kiq` and `taskiq worker` work as usual) whose
    tasks an ExecutionEngine sends as msgpack frames to pools of `taskiq-dataflow worker`s.

    `servers` defaults to $DATAFLOW_NATS_URL, else nats://127.0.0.1:4222. Connection options
    (user/password, token, user_credentials, nkeys_seed, tls, ...) are nats-py's `connect()`
    keywords; they are used for every connection the engine and the workers open.
    """

    def __init__(
        self,
        servers: str | list[str] | None = None,
        *,
        pool: str = "default",
        prefix: str = "dataflow",
        codec: Codec | None = None,
        large_value_threshold: int = 256 * 1024,
        object_store_bucket: str = "dataflow-values",
        heartbeat_interval: float = 0.5,
        heartbeat_timeout: float = 3.0,
        progress_timeout: float = 30.0,
        batch_size: int = 128,
        max_redeliveries: int = 5,
        **connection_kwargs: Any,
    ) -> None:
        super().__init__(
            servers or default_servers(),
            subject=f"{prefix}.taskiq.{pool}",
            queue=f"{prefix}-taskiq-{pool}",
            **connection_kwargs,
        )
        self.pool = pool
        self.prefix = prefix
        self.codec = codec or DEFAULT_CODEC
        self.large_value_threshold = large_value_threshold
        self.object_store_bucket = object_store_bucket
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.progress_timeout = progress_timeout
        self.batch_size = batch_size
        self.max_redeliveries = max_redeliveries

    def tasks_subject(self, pool: str) -> str:
        return f"{self.prefix}.tasks.{pool}"

    def queue_group(self, pool: str) -> str:
        return f"{self.prefix}-{pool}"

    @property
    def heartbeat_subject(self) -> str:
        return f"{self.prefix}.heartbeat"

    def cancel_subject(self, run_id: str) -> str:
        return f"{self.prefix}.cancel.{run_id}"

    def reply_subject(self, run_id: str) -> str:
        return f"{self.prefix}.results.{run_id}"

    async def connect(self, name: str | None = None, **overrides: Any) -> Any:
        """A new nats-py connection with this broker's servers and credentials."""
        import nats

        servers = self.servers if isinstance(self.servers, list) else [self.servers]
        options = {**self.connection_kwargs, **overrides}
        if name is not None:
            options.setdefault("name", name)
        return await nats.connect(servers, **options)
