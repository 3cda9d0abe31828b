"""What the runs of one broker share in one event loop: the NATS connection, the heartbeats.

A run on the cluster used to open a connection of its own, subscribe to the heartbeats, ping
the workers and wait for their answers (at least one 10 ms quiet period) before its first
task could leave, and close it all at the end: milliseconds of set-up for a run of a few
tasks, and a connection per concurrent run. Now the first run of a broker in an event loop
opens an `EngineSession`; every run of that broker in that loop (concurrent ones, sequential
ones, nested ones) uses it:

- one connection (`DataflowNatsBroker.connect_checked`: its credentials, TLS, servers, and
  reconnects; a disconnect and a reconnect are passed on to every live run, which sends its
  flights again as before);
- one subscription to the heartbeats, whose frames are decoded once and handed to every live
  run; the latest heartbeat of each worker is kept, so a run that starts knows the workers at
  once (those heard within `heartbeat_timeout`, with the time they were heard: freshness and
  loss are judged as for beats heard during the run) and pings them only when none is known.

A run keeps what is its own: its reply subject with its secret (one subscription each on the
shared connection), its cancel key, its flights, credit and books of the workers. The
session closes when no run has used it for `DataflowNatsBroker.session_linger` seconds, when
its event loop is torn down (`asyncio.run` cancels its keeper task), or at
`DataflowNatsBroker.shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from .protocol import Heartbeat, ProtocolError, decode_heartbeat
from .redact import redact
from .wire import subscribe_direct

if TYPE_CHECKING:
    from .broker import DataflowNatsBroker
    from .transport import NatsTransport

log = logging.getLogger("taskiq_dataflow.nats")

PRUNE_EVERY = 1.0  # seconds between two sweeps of the heartbeats kept


class EngineSession:
    def __init__(self, broker: DataflowNatsBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self.nc: Any = None
        self.offline = False
        self.closed = False
        self.runs: dict[NatsTransport, None] = {}  # the live runs, in the order they joined
        # worker id -> (its latest heartbeat, when it was heard: time.monotonic())
        self.beats: dict[str, tuple[Heartbeat, float]] = {}
        self._pruned = time.monotonic()
        self.turn = 0  # which worker a run sends to first (NatsTransport._dispatch)
        self._idle_since = loop.time()
        self._opened: asyncio.Future[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._reconnected = asyncio.Event()

    # -- opening and closing --------------------------------------------------------------------

    async def _open(self) -> None:
        broker = self.broker
        self.nc = await broker.connect_checked(
            f"dataflow-engine-{os.getpid()}-{secrets.token_hex(4)}",
            broker.progress_timeout,
            on_disconnected=self._on_disconnected,
            on_reconnected=self._on_reconnected,
        )
        try:
            await subscribe_direct(self.nc, broker.heartbeat_subject, self._on_beat)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.nc.close()
            raise
        self._keeper = asyncio.ensure_future(self._keep())

    async def _keep(self) -> None:
        """Tick the live runs' silence checks (NatsTransport._check: one task for all of them,
        not one per run); close the session once no run used it for session_linger seconds,
        or when the loop is torn down (this task cancelled)."""
        broker = self.broker
        try:
            while True:
                await asyncio.sleep(min(broker.heartbeat_timeout / 4, 0.25))
                now = time.monotonic()
                for run in list(self.runs):
                    if run._watching:
                        try:
                            run._check(now)
                        except Exception as exc:  # the run fails, not the session
                            log.exception("checking run %s failed", run.run_id)
                            run._fail(exc)
                if not self.runs and self.loop.time() - self._idle_since >= broker.session_linger:
                    break
        finally:
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._forget()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()

    def _forget(self) -> None:
        """No new run gets this session (it still closes once idle)."""
        sessions = self.broker._sessions
        if sessions.get(self.loop) is self:
            del sessions[self.loop]

    async def _connected(self) -> None:
        """Until the connection is up (at once when it is): a run does not start on a
        connection that is down, as it would not have connected."""
        nc = self.nc
        if nc.is_connected and not nc.is_reconnecting:
            return
        from .broker import _unreachable_timeout

        timeout = min(self.broker.progress_timeout, _unreachable_timeout(self.broker))
        self._reconnected.clear()
        try:
            await asyncio.wait_for(self._reconnected.wait(), timeout)
        except TimeoutError:
            from ..errors import ClusterError

            raise ClusterError(
                f"cannot connect to NATS at {redact(self.broker.servers)} within {timeout:g} s "
                "(the engine's connection is down and did not come back): start a server "
                "(`taskiq-dataflow server`) or point $DATAFLOW_NATS_URL at one"
            ) from None

    # -- the runs -------------------------------------------------------------------------------

    def join(self, run: NatsTransport) -> bool:
        """Hand `run` the heartbeats from now on and the workers heard lately; True when it
        knows some worker that takes work on its own subject (no need to ping)."""
        self.runs[run] = None
        run._offline = self.offline
        now = time.monotonic()
        timeout = self.broker.heartbeat_timeout
        known = False
        for beat, heard in list(self.beats.values()):
            if now - heard <= timeout:
                run._beat(beat, heard)
                known = known or beat.inbox is not None
        return known

    def leave(self, run: NatsTransport) -> None:
        self.runs.pop(run, None)
        if not self.runs:
            self._idle_since = self.loop.time()

    # -- what comes in --------------------------------------------------------------------------

    def _on_beat(self, msg: Any) -> None:
        now = time.monotonic()
        runs = list(self.runs)
        for run in runs:
            run._heard = now  # anything from the cluster counts as progress, as before
        try:
            beat = decode_heartbeat(self.broker.codec, msg.data)
        except ProtocolError:
            return  # a bystander's, or garbage: no worker to record
        self.beats[beat.worker] = (beat, now)
        for run in runs:
            run._beat(beat, now)
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            timeout = self.broker.heartbeat_timeout
            for worker, (_, heard) in list(self.beats.items()):
                if now - heard > timeout:
                    del self.beats[worker]

    def _on_disconnected(self) -> None:
        self.offline = True
        for run in list(self.runs):
            run._offline = True

    def _on_reconnected(self) -> None:
        self.offline = False
        self._reconnected.set()
        for run in list(self.runs):
            run._offline = False
            run._resend_all()


async def session_for(broker: DataflowNatsBroker) -> EngineSession:
    """The broker's session in the running loop, opened (and connected) on first use."""
    loop = asyncio.get_running_loop()
    sessions = broker._sessions
    for other in [lp for lp in sessions if lp.is_closed()]:
        del sessions[other]  # a loop closed without tearing its session down
    session = sessions.get(loop)
    if session is None or session.closed:
        session = sessions[loop] = EngineSession(broker, loop)
        session._opened = asyncio.ensure_future(session._open())
    assert session._opened is not None
    try:
        # shielded: one run cancelled while the connection is made does not fail the others
        await asyncio.shield(session._opened)
    except BaseException:
        if session._opened.done():
            session._forget()  # the next run tries again
        raise
    await session._connected()
    return session


async def close_sessions(broker: DataflowNatsBroker) -> None:
    """Close the broker's session in the running loop (DataflowNatsBroker.shutdown)."""
    session = broker._sessions.get(asyncio.get_running_loop())
    if session is not None:
        if session._opened is not None and not session._opened.done():
            with contextlib.suppress(BaseException):
                await session._opened
        await session.close()
