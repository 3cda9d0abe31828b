"""The engine side of streams: consumers started with their producers, bounded buffers.

Part of the run's state (run_state.RunState owns one once a task produces or reads a stream).
What needs a transport goes out as the run's instructions (held results to requeue, producers
to stop); items between processes travel over the transport's StreamLink, handed in by the
driver once the transport started.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import StreamError
from .events import TaskError
from .streams import WATCH_BUFFER, Stream, StreamRef, Watch, is_producer, pump
from .task import InEngine, TaskSpec, original_function
from .transports.base import Completion

if TYPE_CHECKING:
    from .dataflow.graph import DAG
    from .run_state import Plan, RunState


def is_fed(value: Any) -> bool:
    """Whether an external input is a stream: an async iterable (not a Stream a task got)."""
    return hasattr(value, "__aiter__") and not isinstance(value, StreamRef)


def feed_inputs(dag: DAG, inputs: dict[str, Any]) -> tuple[DAG, dict[str, Any], list[str]]:
    """A run's DAG and inputs when some inputs are async iterables: each becomes the stream of
    a producer task of its own (in the engine's process, `input:<key>`) that re-yields its
    items, so streaming consumers read it as it comes and the others get the list. Returns
    the DAG (a copy with those producers), the other inputs, and the fed keys."""
    fed = [key for key, value in inputs.items() if is_fed(value)]
    if not fed:
        return dag, inputs, fed
    consumed = set(dag.external_inputs)
    unread = [key for key in fed if key not in consumed]
    if unread:
        raise ValueError(
            f"input {unread[0]!r} is an async iterable but no task reads it as an external "
            "input (a key some task produces cannot also be given)"
        )
    copy = dag.copy(external=[k for k in dag.external_inputs if k not in fed])
    for key in fed:
        name = f"input:{key}"
        spec = TaskSpec(outputs=(key,), inputs=(), name=name, local=True)
        copy.append_node(InEngine(_feeder(inputs[key]), spec), name, (), (key,))
    return copy, {k: v for k, v in inputs.items() if k not in fed}, fed


def _feeder(source: Any) -> Any:
    async def feed() -> AsyncIterator[Any]:
        async for item in source:
            yield item

    return feed


def forget_unkept_streams(run: RunState) -> None:
    """A stream that every consumer read live was not kept (its stored value is None): its
    producer runs again when one of those consumers has to."""
    restored, consumers = run.restored, run.graph.consumers
    for node, outs in list(restored.items()):
        if (
            None in outs.values()
            and is_producer(original_function(run.tasks[node]))
            and any(c not in restored for k in run.node_outputs[node] for c in consumers(k))
        ):
            del restored[node]


class Streaming:
    """Stream wiring of one run: consumers started with their producer, bounded buffers.

    Producer and consumer in this process share a Stream. When either runs elsewhere (a cluster
    worker), they share a route instead (cluster/streams.py): the producer's end sends the
    items over NATS, the consumer's end is a StreamReceiver.
    """

    def __init__(self, run: RunState) -> None:
        self.run = run
        # producer -> its live consumers' ends: Streams, or StreamRefs when one side is remote
        self.subscribers: dict[int, list[Any]] = {}
        self.attached: dict[int, dict[str, Any]] = {}  # consumer -> key -> what it reads
        self.early: dict[int, Completion | None] = {}  # started before the scheduler said so
        self.handed: set[int] = set()  # early nodes the scheduler has since handed out
        self.live: set[int] = set()  # consumers that read a stream while it was produced
        self.reported: set[int] = set()  # early nodes whose failure the run already reported
        self.stopped: set[int] = set()  # producers cancelled because nobody reads them any more
        self.kept: dict[int, bool] = {}  # producer -> keeps its list, once a reader ended
        # producer -> (input number of the route, what the caller reads) for streams the run's
        # caller reads as they are produced (RunHandle.stream); a watched producer never stops
        self.watched: dict[int, list[tuple[int, Watch[Any]]]] = {}

    def watch(self, producer: int, key: str) -> Watch[Any]:
        """A stream of `key` for the run's caller, bound when its producer starts (which it
        has not yet: see RunHandle.stream)."""
        watches = self.watched.setdefault(producer, [])
        found = Watch[Any](key)
        # the route of a watch is named after its producer, with input numbers below 0 (a
        # consumer's own routes use its node and its input numbers)
        watches.append((-1 - len(watches), found))
        return found

    def bind_watches(self, producer: int) -> None:
        """The producer starts: each watch of it gets its end, next to its consumers' ends."""
        link, remote = self.link, self.remote(producer)
        for index, found in self.watched.get(producer, ()):
            end: Any
            if link is None or not remote:
                end = Stream(found.key, WATCH_BUFFER)
                found._bind(end)
            else:
                end = link.route(producer, index, found.key, WATCH_BUFFER)
                found._bind(link.receiver(end))
            self.subscribers.setdefault(producer, []).append(end)

    @property
    def link(self) -> Any:
        """The transport's stream link (None: every stream stays in this process), read from
        the run: the wiring may be made before the transport started (RunHandle.stream)."""
        return self.run.link

    def remote(self, node: int) -> bool:
        return self.link is not None and not self.run.plan(node).place.local

    def wire(self, node: int, plan: Plan) -> tuple[Mapping[str, Any], Any, Any]:
        """A stream task's job parts: its input values (streams among them), the callable
        (a producer here pumps into its consumers' ends), and what a remote producer needs."""
        values = self.arguments(node, plan)
        if not plan.producer:
            return values, plan.func, None
        if self.remote(node):
            return values, plan.func, self.remote_producer(node)
        return values, functools.partial(self.produce, node, plan.func), None

    def arguments(self, node: int, plan: Plan) -> Mapping[str, Any]:
        """The node's input values, its stream keys as Streams (StreamRefs for a remote node)."""
        streams = self.run.streams_of(node)
        if not streams:
            return self.run.values
        values = dict.fromkeys(self.run.node_inputs[node])
        attached = self.attached.get(node, {})
        remote = self.remote(node)
        for key in values:
            if key not in streams:
                values[key] = self.run.values[key]
            elif key in attached:
                values[key] = attached[key]
            else:  # the producer had finished: the whole stream at once
                items = list(self.run.values[key] or ())
                values[key] = StreamRef(key, "", "", 0, items) if remote else Stream.of(key, items)
        return values

    def keeps(self, producer: int) -> bool:
        """Whether the producer's items are kept as a list: unless every consumer reads the
        stream live (a final output, a list consumer, or a streaming consumer that could not
        start with it all need the list). Only true before any of its readers ended (an
        ended reader is no longer attached)."""
        run = self.run
        return any(
            not consumers or any(key not in self.attached.get(c, {}) for c in consumers)
            for key in run.node_outputs[producer]
            for consumers in [run.graph.consumers(key)]
        )

    def remote_producer(self, node: int) -> list[Any]:
        """What a producer running elsewhere needs: keep the list?, and its consumers' routes."""
        routes = [self.keeps(node), self.subscribers.get(node, [])]
        outputs = self.run.node_outputs[node]
        if len(outputs) > 1:  # it yields StreamItems, one stream per output
            routes.append(list(outputs))
        return routes

    async def produce(self, node: int, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an async generator task here (see streams.pump)."""
        link = self.link
        sinks = [
            link.sender(end) if isinstance(end, StreamRef) else end
            for end in self.subscribers.get(node, [])
        ]
        keys = self.run.node_outputs[node]
        return await pump(func(*args, **kwargs), sinks, self.keeps(node), keys)

    def failed(self, node: int, error: TaskError) -> None:
        """A producer elsewhere failed for good (its workers may be dead): end its streams."""
        if self.link is not None and self.remote(node):
            exc = StreamError(f"task '{error.task_name}' failed: {error.type}: {error.message}")
            for end in self.subscribers.get(node, []):
                self.link.end(end, exc)

    def before_dispatch(self, nodes: list[int]) -> list[int]:
        """The nodes to start now: `nodes` without those started early (their result is
        already on its way; a held one is released), with the streaming consumers of the
        producers among them."""
        run = self.run
        fresh = []
        for node in nodes:
            if node in self.early:
                self.handed.add(node)
                held = self.early[node]
                if held is not None:
                    self.early[node] = None
                    run.requeue.append(held)
            else:
                fresh.append(node)
        starting = {n for n in fresh if run.plan(n).producer}
        if self.watched:
            for producer in starting.intersection(self.watched):
                self.bind_watches(producer)
        starting_early = []
        work = list(starting)
        while work:
            producer = work.pop()
            for key in run.node_outputs[producer]:
                for consumer in run.graph.consumers(key):
                    if self.startable(consumer, starting):
                        self.start_early(consumer)
                        starting.add(consumer)
                        starting_early.append(consumer)
                        if run.plan(consumer).producer:
                            work.append(consumer)
        return fresh + starting_early

    def startable(self, node: int, starting: set[int]) -> bool:
        run = self.run
        if node in self.early or run.attempts[node] != 0 or node in starting:
            return False
        streams = run.streams_of(node)
        if not streams:
            return False
        produced = run.values
        for key in run.node_inputs[node]:
            if key in produced:
                continue
            if key not in streams:
                return False
            producer = run.graph.producer(key)
            if producer not in starting:
                return False
        return True

    def start_early(self, node: int) -> None:
        run = self.run
        plan = run.plan(node)
        attached = self.attached.setdefault(node, {})
        streams = run.streams_of(node)
        for index, key in enumerate(run.node_inputs[node]):
            if key not in streams or key in run.values:
                continue
            producer = run.graph.producer(key)
            end: Any
            if self.link is None or not (self.remote(node) or self.remote(producer)):
                end = attached[key] = Stream(key, plan.buffer)
            else:
                end = self.link.route(node, index, key, plan.buffer)
                attached[key] = end if self.remote(node) else self.link.receiver(end)
            self.subscribers.setdefault(producer, []).append(end)
        run.attempts[node] = 1
        self.early[node] = None
        self.live.add(node)

    def hold(self, c: Completion) -> bool:
        """Keep an early node's result until the scheduler hands the node out. A failure is
        not kept from the run: it is reported at once (fail_fast stops the run now), and only
        the scheduler's part waits for the hand-out (see failed_early)."""
        node = c.node
        if node not in self.early:
            return False
        self.stop_reading(node)
        if node in self.handed:
            del self.early[node]
            self.handed.discard(node)
            return False
        self.early[node] = c
        return c.ok

    def stop_reading(self, node: int) -> None:
        """The node ended: its producers stop waiting for it, and one left without readers
        and not kept stops producing: cancelled now where the transport can (a producer in
        this process), else at its next item (streams.pump)."""
        run = self.run
        producers = {run.graph.producer(key) for key in self.attached.get(node, ())}
        # decided when the first of its readers ends, all still attached: a detached reader
        # would count as one that needs the whole list
        for p in producers - self.kept.keys():
            self.kept[p] = self.keeps(p)
        unkept = {p for p in producers if not self.kept[p] and p not in self.watched}
        attached = self.attached.pop(node, {})
        for end in attached.values():
            if isinstance(end, StreamRef):
                assert self.link is not None
                self.link.abandon(end)
            else:
                end._abandon()
        for producer in unkept:
            if (
                run.attempts[producer] > 0
                and producer not in self.stopped
                and not self.read_live(producer)
            ):
                # the driver asks the transport after this batch; one that cannot stop it
                # lets it run to its end, which completes it as usual
                run.stops.append(producer)
                self.stopped.add(producer)

    def read_live(self, producer: int) -> bool:
        """Whether a consumer still reads one of the producer's streams as it comes."""
        run = self.run
        return any(
            key in self.attached.get(consumer, ())
            for key in run.node_outputs[producer]
            for consumer in run.graph.consumers(key)
        )

    def unstopped(self, c: Completion) -> Completion:
        """A producer cancelled for want of readers completed: its stream was not kept, so
        its value is None, as if it had ended by itself."""
        if c.ok or c.node not in self.stopped or c.value.type != "CancelledError":
            return c
        return Completion(c.node, c.attempt, True, None, c.worker)

    def failed_early(self, node: int) -> bool:
        """Whether `node` failed before the scheduler handed it out (it is still pending there
        while its producer runs); its held failure is pushed again at the hand-out."""
        held = self.early.get(node)
        return held is not None and not held.ok
