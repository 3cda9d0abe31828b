"""What a run knows of the tasks its tasks added (RunState.add_tasks): who produces each added
key, the keys given with them, the private batches, and the checks a batch passes in Python
before the one `Scheduler.add_nodes` call (which checks the graph in Rust)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import GrowthError

if TYPE_CHECKING:
    from .dataflow.graph import NodeFields
    from .run_state import RunState


class Growth:
    """What a run knows of the tasks its tasks added: who produces each added key (for the
    messages and the compensation order; the scheduler keeps its own copy, in Rust), the keys
    given with them, and the private batches (see RunState.add_tasks)."""

    __slots__ = ("base", "dropped", "given", "private", "producer", "reads", "unlisted", "waiting")

    def __init__(self, state: RunState) -> None:
        self.base = len(state.tasks)
        self.producer: dict[str, int] = {}
        self.reads: list[Sequence[str]] = []  # inputs per added task, given keys dropped
        self.given: set[str] = set()  # keys added with a value (`values=`)
        # keys left out of the run's outputs: given ones and those of private batches
        self.unlisted: set[str] = set()
        # private batches by their first node: (end, keys), until their result is in
        self.private: dict[int, tuple[int, list[str]]] = {}
        self.dropped: set[str] = set()  # keys of private batches whose result is in
        # outputs of tasks that returned result_of(key) -> that key, until it is in: the
        # scheduler has their producer done, so a task added now that reads one waits for `key`
        self.waiting: dict[str, str] = {}

    def check_given(self, state: RunState, values: Mapping[str, Any]) -> dict[str, Any]:
        given = dict(values)
        graph = state.graph
        for key in given:
            if not isinstance(key, str):
                raise GrowthError(f"values= takes str keys, got {key!r}")
            if (
                key in state.values
                or key in self.producer
                or key in self.given
                or key in self.dropped
                or graph.producer(key) is not None
                or graph.consumers(key)
            ):
                raise GrowthError(
                    f"values= gives key {key!r}, which the run already has: given keys must be new"
                )
        return given

    def flatten(
        self,
        added: Sequence[NodeFields],
        run_inputs: Mapping[str, Any],
        given: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], list[tuple[int, int]], list[Sequence[str]]]:
        """The scheduler's form of a batch (names, counts, and each task's inputs as given to
        it): run inputs and given keys are available and have no producer, so they are left
        out of the inputs; an output may not shadow one."""
        names: list[str] = []
        counts: list[tuple[int, int]] = []
        reads: list[Sequence[str]] = []
        known, dropped, waiting = self.given, self.dropped, self.waiting
        given = given or {}
        # one loop per task, membership tests only: a batch may hold 100,000s of tasks
        for f in added:
            ins, outs = f.inputs, f.outputs
            for k in ins:
                if k in given or k in known or k in run_inputs:
                    ins = [k for k in ins if not (k in given or k in known or k in run_inputs)]
                    break
            if dropped:
                self._check_dropped(f, ins)
            for key in outs:
                if key in given or key in known or key in run_inputs:
                    raise GrowthError(
                        f"added task {f.name!r} outputs key {key!r}, which is an input of the "
                        "run or a given key: give the output another name"
                    )
            if waiting and not waiting.keys().isdisjoint(ins):
                names.extend(self._awaited_key(k) for k in ins)
            else:
                names += ins
            names += outs
            counts.append((len(ins), len(outs)))
            reads.append(ins)
        return names, counts, reads

    def _check_dropped(self, f: NodeFields, ins: Sequence[str]) -> None:
        for key in ins:
            if key in self.dropped:
                raise GrowthError(
                    f"added task {f.name!r} reads key {key!r}, which belonged to tasks added "
                    "privately (private=True) and is gone: read their result instead"
                )

    def _awaited_key(self, key: str) -> str:
        while key in self.waiting:
            key = self.waiting[key]
        return key

    def record(
        self,
        state: RunState,
        added: Sequence[NodeFields],
        reads: list[Sequence[str]],
        given: Mapping[str, Any] | None = None,
        private: bool = False,
        restored: Mapping[str, Any] | None = None,
    ) -> None:
        first = len(state.tasks)
        # a column at a time: a batch may hold 100,000s of tasks
        state.tasks.extend([f.task for f in added])
        state.names.extend([f.name for f in added])
        state.node_inputs.extend([f.inputs for f in added])
        state.node_outputs.extend([f.outputs for f in added])
        state.metadata.extend([f.metadata or None for f in added])
        producer = self.producer
        for node, f in enumerate(added, first):
            for key in f.outputs:
                producer[key] = node
        self.reads.extend(reads)
        state.attempts.extend([0] * len(added))
        if given:
            self.given.update(given)
            # restored outputs are outputs of the run, unlike values given to its tasks
            self.unlisted.update(k for k in given if not (restored and k in restored))
        if private:
            keys = [k for f in added for k in f.outputs]
            keys += given or ()
            self.unlisted.update(keys)
            self.private[first] = (first + len(added), keys)

    def drop_private(self, state: RunState, producer: int) -> None:
        """`producer`'s outputs made a result: when it belongs to a private batch, that
        batch's keys go (their values are garbage once the result is recorded)."""
        if not self.private:
            return
        for first, (end, _) in self.private.items():
            if first <= producer < end:
                break
        else:
            return
        _, keys = self.private.pop(first)
        values = state.values
        for key in keys:
            values.pop(key, None)
        self.dropped.update(keys)
        self.unlisted.difference_update(keys)

    def explain(self, exc: Exception, added: Sequence[NodeFields], names: Sequence[str]) -> str:
        """The scheduler's refusal in the run's terms: task names instead of batch indices."""
        message, kind, nodes, key, producer = exc.args
        named = [repr(added[j].name) for j in nodes]
        if kind == "duplicate_output":
            return (
                f"added tasks {named[0]} and {named[1]} both output key {key!r}: "
                "each key needs a single producer"
            )
        if kind == "output_exists" and producer is not None:
            return (
                f"added task {named[0]} outputs key {key!r}, which task "
                f"{names[producer]!r} already produces: added tasks output new keys only"
            )
        if kind == "output_exists":
            return (
                f"added task {named[0]} outputs key {key!r}, which tasks of the run read as an "
                "input: added tasks output new keys only"
            )
        if kind == "unknown_input":
            return (
                f"added task {named[0]} reads key {key!r}, which no task produces and the run "
                "was not given: add its producer in the same call or pass it as a run input"
            )
        if kind == "cycle":
            return f"added tasks form a cycle: {' -> '.join(named)}"
        return str(message)

    def lost_upstream(self, state: RunState, node: int) -> str:
        """The failed or skipped task an added task reads from (named in `skipped`)."""
        for key in self.reads[node - self.base]:
            producer = self.producer.get(key)
            if producer is None:
                producer = state.graph.producer(key)
            if producer is not None and state.scheduler.state(producer) in ("failed", "skipped"):
                name: str = state.names[producer]
                return name
        return "<unknown>"

    def order(self) -> list[int]:
        """The added tasks, each after the added tasks it reads from."""
        from graphlib import TopologicalSorter

        producer, base = self.producer, self.base
        sorter: TopologicalSorter[int] = TopologicalSorter()
        for i, reads in enumerate(self.reads):
            sorter.add(base + i, *(p for k in reads if (p := producer.get(k)) is not None))
        return list(sorter.static_order())
