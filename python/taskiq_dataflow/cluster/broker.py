"""DataflowNatsBroker: a taskiq NATS broker that also carries the dataflow cluster's settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskiq_nats import NatsBroker

from ..errors import ClusterError as ClusterError  # its documented path
from .protocol import DEFAULT_CODEC, Codec
from .redact import redact

if TYPE_CHECKING:
    from .session import EngineSession

log = logging.getLogger("taskiq_dataflow.nats")

NATS_URL_ENV = "DATAFLOW_NATS_URL"
CONNECT_TIMEOUT_ENV = "DATAFLOW_CONNECT_TIMEOUT"


def default_servers() -> str:
    return os.environ.get(NATS_URL_ENV, "nats://127.0.0.1:4222")


def server_list(servers: str | list[str]) -> list[str]:
    """Server URLs from a URL, a comma list (`nats://a:4222,nats://b:4222`, as in
    $DATAFLOW_NATS_URL) or a list of either; each checked, so that a typo is named at once
    rather than found as a connection that never comes up."""
    items = [servers] if isinstance(servers, str) else list(servers)
    urls = [url.strip() for item in items for url in str(item).split(",") if url.strip()]
    if not urls:
        raise ClusterError(f"no NATS server URL in {servers!r}: give one such as nats://host:4222")
    for url in urls:
        check_server_url(url)
    return urls


def check_server_url(url: str) -> None:
    from urllib.parse import urlsplit

    shown = redact(url)
    try:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        port = parts.port
    except ValueError as exc:
        raise ClusterError(f"NATS server URL {shown!r} is not valid: {exc}") from None
    if parts.scheme not in ("nats", "tls", "ws", "wss"):
        raise ClusterError(
            f"NATS server URL {shown!r} has scheme {parts.scheme!r}: use nats://, tls://, ws:// "
            "or wss://"
        )
    if not parts.hostname:
        raise ClusterError(f"NATS server URL {shown!r} names no host (nats://host:4222)")
    if port == 0:
        raise ClusterError(f"NATS server URL {shown!r} has port 0")


class DataflowNatsBroker(NatsBroker):
    """A taskiq broker over NATS (`@broker.task`, `kiq` and `taskiq worker` work as usual) whose
    tasks an ExecutionEngine sends as msgpack frames to pools of `taskiq-dataflow worker`s.

    `servers` is one URL, a comma list or a list of URLs: the servers of a NATS cluster,
    tried in the order given (so a worker lists its own host's server first); the servers the
    cluster advertises are added to them, and a connection fails over to another when its
    server goes away. It defaults to $DATAFLOW_NATS_URL (also a comma list), else
    nats://127.0.0.1:4222. Connection options (user/password, token, user_credentials,
    nkeys_seed, tls, ...) are nats-py's `connect()` keywords; they are used for every
    connection the engine and the workers open.

    `object_store_replicas`: the replicas of the object store bucket large values go to
    (created on first use); None: 3 on a cluster of three or more servers, else 1.
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
        object_store_replicas: int | None = None,
        heartbeat_interval: float = 0.5,
        heartbeat_timeout: float = 3.0,
        progress_timeout: float = 30.0,
        batch_size: int = 128,
        max_redeliveries: int = 5,
        **connection_kwargs: Any,
    ) -> None:
        if object_store_replicas is not None and not 1 <= object_store_replicas <= 5:
            raise ClusterError(
                f"object_store_replicas={object_store_replicas!r}: JetStream keeps 1 to 5 replicas"
            )
        super().__init__(
            server_list(servers or default_servers()),
            subject=f"{prefix}.taskiq.{pool}",
            queue=f"{prefix}-taskiq-{pool}",
            **connection_kwargs,
        )
        self.pool = pool
        self.prefix = prefix
        self.codec = codec or DEFAULT_CODEC
        self.large_value_threshold = large_value_threshold
        self.object_store_bucket = object_store_bucket
        self.object_store_replicas = object_store_replicas
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.progress_timeout = progress_timeout
        self.batch_size = batch_size
        self.max_redeliveries = max_redeliveries
        # the engine side's connection per event loop, shared by the runs (cluster/session.py)
        self._sessions: dict[asyncio.AbstractEventLoop, EngineSession] = {}
        self._taskiq_started = False

    # How long the engine's connection (shared by the runs of this broker in an event loop)
    # stays open after its last run ended; the next run within that time starts at once.
    session_linger: float = 10.0

    async def startup(self) -> None:
        await super().startup()
        self._taskiq_started = True

    async def shutdown(self) -> None:
        """Close the engine's connection in this loop (if a run opened one), then what
        taskiq's startup() opened (if it was called)."""
        from .session import close_sessions

        await close_sessions(self)
        if self._taskiq_started:
            self._taskiq_started = False
            await super().shutdown()

    def use_servers(self, servers: str | list[str]) -> None:
        """Connect to these servers instead (`--server` on the command line)."""
        self.servers = server_list(servers)
        for session in list(self._sessions.values()):
            session._forget()  # the next run connects to these (the old one closes when idle)

    def tasks_subject(self, pool: str) -> str:
        return f"{self.prefix}.tasks.{pool}"

    def queue_group(self, pool: str) -> str:
        return f"{self.prefix}-{pool}"

    @property
    def heartbeat_subject(self) -> str:
        return f"{self.prefix}.heartbeat"

    @property
    def ping_subject(self) -> str:
        """Where an engine asks every worker to heart-beat at once (so it need not wait a
        heartbeat interval to learn where it may send work)."""
        return f"{self.prefix}.ping"

    def worker_subject(self, worker_key: str) -> str:
        """A worker's own task subject: the engine sends it only what it has room for."""
        return f"{self.prefix}.worker.{worker_key}"

    def cancel_subject(self, secret: str) -> str:
        """Named after the run's cancel secret, not its id: a bystander who knows the run id
        cannot stop it."""
        return f"{self.prefix}.cancel.{secret}"

    def reply_subject(self, run_id: str, secret: str) -> str:
        """The run's results subject; `secret` (random per run, never printed) keeps a
        bystander who knows the run id from publishing results or rejections on it."""
        return f"{self.prefix}.results.{run_id}.{secret}"

    # How long a first connection may take when the server cannot be reached (refused, no
    # route): short, because the user is usually waiting at a terminal, yet long enough for a
    # server started a moment earlier (`taskiq-dataflow server &`) to come up. Set it on the
    # broker or with $DATAFLOW_CONNECT_TIMEOUT.
    unreachable_timeout: float = 5.0

    async def connect_checked(
        self,
        name: str,
        timeout: float,
        on_disconnected: Callable[[], None] | None = None,
        on_reconnected: Callable[[], None] | None = None,
    ) -> Any:
        """A connection that reconnects forever once made, but fails with one clear
        ClusterError (credentials redacted) at once when the server refuses the login, and
        when it cannot be reached within min(`timeout`, the unreachable timeout). Errors
        before the connection is made are not logged (they are summarised in that error);
        the user's own error/disconnected/reconnected callbacks still run."""
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[BaseException] = loop.create_future()
        errors: list[BaseException] = []
        connected = False
        user = {
            k: self.connection_kwargs.get(k)
            for k in ("error_cb", "disconnected_cb", "reconnected_cb")
        }
        timeout = min(timeout, _unreachable_timeout(self))

        async def on_error(exc: BaseException) -> None:
            errors.append(exc)
            # nats-py retries a refused login for as long as it may reconnect (forever here)
            if not connected and _is_login_error(exc) and not refused.done():
                refused.set_result(exc)
            if user["error_cb"] is not None:
                await user["error_cb"](exc)
            elif connected:
                log.warning("NATS %s: %s: %s", redact(self.servers), type(exc).__name__, exc)

        async def on_disconnect() -> None:
            if on_disconnected is not None:
                on_disconnected()
            if user["disconnected_cb"] is not None:
                await user["disconnected_cb"]()

        async def on_reconnect() -> None:
            if on_reconnected is not None:
                on_reconnected()
            if user["reconnected_cb"] is not None:
                await user["reconnected_cb"]()

        connect = asyncio.ensure_future(
            self.connect(
                name,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                # nats-py waits this long between attempts, also before the first connection:
                # its 2 s default would leave two tries within the unreachable timeout
                reconnect_time_wait=self.connection_kwargs.get("reconnect_time_wait", 0.25),
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        )
        try:
            await asyncio.wait([connect, refused], timeout=timeout, return_when="FIRST_COMPLETED")
            if not connect.done():
                connect.cancel()
                with contextlib.suppress(BaseException):
                    await connect
                raise _connect_error(self.servers, timeout, refused, errors)
            connected = True
            return connect.result()
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(
                f"cannot connect to NATS at {redact(self.servers)}: {type(exc).__name__}: {exc}"
            ) from exc

    async def connect(self, name: str | None = None, **overrides: Any) -> Any:
        """A new nats-py connection with this broker's servers and credentials."""
        import nats

        servers = server_list(self.servers)
        # the order given is the order of preference (a worker's own host first), not a pool
        # to shuffle; the servers the cluster advertises come after them. A server that goes
        # silent (its host cut off) is given up after 3 unanswered pings 5 s apart, well within
        # progress_timeout, rather than nats-py's 2 x 120 s.
        options = {
            "dont_randomize": True,
            "ping_interval": 5,
            "max_outstanding_pings": 3,
            **self.connection_kwargs,
            **overrides,
        }
        if name is not None:
            options.setdefault("name", name)
        return await nats.connect(servers, **options)


# Room in a frame for everything but its entries (kind, run id, reply subject, cancel key,
# worker id, claims): a frame's entries may fill max_payload less this.
FRAME_HEADROOM = 4096
ENTRY_OVERHEAD = 16  # the [seq, ok, ...] wrapper of one entry and its share of array headers


def frame_budget(max_payload: int) -> int:
    """Bytes of entries one frame may carry on a server that accepts `max_payload`."""
    return max(max_payload - FRAME_HEADROOM, max_payload // 2)


def publish_now(nc: Any, subject: str, payload: bytes) -> asyncio.Future[Any] | None:
    """Publish with no asyncio.Task: nats-py's publish usually only appends to its outbound
    buffer and wakes its flusher, so it is stepped here and finishes at once. If it must wait
    (the buffer is full), the rest runs as the returned task. Errors raise here.

    A task per publish cost more CPU than the publish, and a loop iteration of latency."""
    from ..transports.local import _resume

    coro = nc.publish(subject, payload)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_resume(coro, yielded, None))


def _unreachable_timeout(broker: DataflowNatsBroker) -> float:
    text = os.environ.get(CONNECT_TIMEOUT_ENV)
    if not text:
        return broker.unreachable_timeout
    try:
        value = float(text)
    except ValueError:
        raise ClusterError(
            f"${CONNECT_TIMEOUT_ENV}={text!r} is not a number of seconds (for example 5)"
        ) from None
    if value <= 0:
        raise ClusterError(f"${CONNECT_TIMEOUT_ENV}={text!r} must be a positive number of seconds")
    return value


def _connect_error(
    servers: Any,
    timeout: float,
    refused: asyncio.Future[BaseException],
    errors: list[BaseException],
) -> ClusterError:
    where = redact(servers)
    if refused.done():
        return ClusterError(
            f"cannot connect to NATS at {where}: the server refused the login "
            f"({redact(refused.result())}); give DataflowNatsBroker the right user=/password= "
            "(or token=, user_credentials=, nkeys_seed=)"
        )
    last = f" (last error: {type(errors[-1]).__name__}: {redact(errors[-1])})" if errors else ""
    return ClusterError(
        f"cannot connect to NATS at {where} within {timeout:g} s{last}: start a server "
        f"(`taskiq-dataflow server`) or point ${NATS_URL_ENV} at one; "
        f"${CONNECT_TIMEOUT_ENV} sets this timeout"
    )


def _is_login_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "authorization" in text or "authentication" in text
