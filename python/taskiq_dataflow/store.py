"""Provenance: a run store fed by the engine's events, for restart and replay (SQLite).

`ExecutionEngine(..., store=RunStore("runs.db"))` records every run (inputs, status, timings)
and every task execution (inputs digest, outputs, status, timings, error, attempt, worker).
Writes are committed once per event-loop turn, in WAL mode, so a process killed mid-run loses at
most the last turn's records: those tasks simply run again on restart.

- `await engine.restart(run_id)` continues a failed or interrupted run without re-running the
  tasks it completed.
- `await engine.replay(run_id, rerun={"task"})` re-runs the named tasks and everything
  downstream of them, reusing every other output; restored values keep their types.

A map node's items run as a nested run recorded in the same store under `nested_run_id(run,
map node)`, with the outer run as its parent: restarting the outer run restarts that nested run
when its stored items equal the current ones, so completed items do not run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import string
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster.protocol import DEFAULT_CODEC, Codec, EncodeError
from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepRetried,
    StepSkipped,
    StepStarted,
)

if TYPE_CHECKING:
    from .dataflow.dag import DAG

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    parent_run_id TEXT,
    dag_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs BLOB,
    started_at REAL NOT NULL,
    finished_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS task_executions (
    run_id TEXT NOT NULL,
    node INTEGER NOT NULL,
    task_name TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    inputs_digest TEXT,
    outputs BLOB,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    worker TEXT,
    PRIMARY KEY (run_id, node, attempt)
);
"""


class StoreError(LookupError):
    """A run that is not in the store, or a DAG that does not match the stored run."""


def dag_fingerprint(dag: DAG) -> str:
    """A digest of the DAG's shape (task names and keys per node): restart needs the same DAG."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((dag._names, dag._inputs, dag._outputs, dag._edges)).encode())
    return h.hexdigest()


class RunStore:
    def __init__(
        self,
        path: str | Path = ":memory:",
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.codec = codec or DEFAULT_CODEC
        self._clock = clock
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flush_scheduled = False

    # -- writing (fed by events) ----------------------------------------------------------------

    def attach(self, engine: Any) -> Callable[[], None]:
        """Record `engine`'s runs; returns the unsubscribe function."""
        return engine.events.subscribe(_Recording(self, engine.dag).on_event)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit what the events of this loop turn recorded (one transaction)."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        with self._db:
            self._db.execute("BEGIN")
            for sql, params in pending:
                self._db.execute(sql, params)

    def encode(self, value: Any) -> tuple[bytes | None, str | None]:
        try:
            return self.codec.packb(value), None
        except EncodeError as exc:
            return None, str(exc)

    # -- reading --------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> dict[str, Any]:
        self.flush()
        cur = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in the store at {self.path}")
        run = dict(zip([c[0] for c in cur.description], row, strict=True))
        run["inputs"] = self.codec.unpackb(run["inputs"]) if run["inputs"] is not None else {}
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        self.flush()
        cur = self._db.execute(
            "SELECT run_id, parent_run_id, status, started_at, finished_at, error FROM runs "
            "ORDER BY started_at"
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def get_task_executions(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of every task of the run, outputs decoded."""
        self.flush()
        cur = self._db.execute(
            "SELECT * FROM task_executions WHERE run_id = ? ORDER BY started_at, node, attempt",
            (run_id,),
        )
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            if row["outputs"] is not None:
                row["outputs"] = self.codec.unpackb(row["outputs"])
        return rows

    def completed_outputs(self, run_id: str) -> dict[int, dict[str, Any]]:
        """node -> its outputs, for every task the run completed with storable outputs."""
        self.flush()
        rows = self._db.execute(
            "SELECT node, outputs FROM task_executions "
            "WHERE run_id = ? AND status = 'completed' AND outputs IS NOT NULL",
            (run_id,),
        ).fetchall()
        return {node: self.codec.unpackb(blob) for node, blob in rows}

    def discard(self, run_id: str) -> None:
        """Forget a run, its task executions and its nested runs (queued like event writes,
        so a run that starts afresh under the same id right after keeps none of its old rows)."""
        # nested ids extend the parent's with '/': the range [run_id/, run_id0) holds exactly
        # them ('0' follows '/') and uses the primary key instead of scanning every row
        low, high = run_id + _NESTED, run_id + chr(ord(_NESTED) + 1)
        for table in ("task_executions", "runs"):
            self._write(
                f"DELETE FROM {table} WHERE run_id = ? OR (run_id >= ? AND run_id < ?)",
                (run_id, low, high),
            )

    def close(self) -> None:
        self.flush()
        self._db.close()


class _Recording:
    """One engine's event subscription: turns events into rows."""

    def __init__(self, store: RunStore, dag: DAG) -> None:
        self.store, self.dag = store, dag
        self.digests: dict[str, bytes] = {}  # key -> digest of its value, for inputs digests
        self.fingerprint: str | None = None

    def _digest_of(self, node: int) -> str:
        h = hashlib.blake2b(digest_size=16)
        for key in self.dag._inputs[node]:
            h.update(self.digests.get(key, b"?"))
        return h.hexdigest()

    def _remember(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            blob, _ = self.store.encode(value)
            self.digests[key] = hashlib.blake2b(
                blob or repr(value).encode(), digest_size=16
            ).digest()

    def on_event(self, event: Event) -> None:
        store, now = self.store, self.store._clock()
        write = store._write
        if isinstance(event, RunStarted):
            self.digests.clear()
            self._remember(event.input_values)
            if self.fingerprint is None:
                self.fingerprint = dag_fingerprint(self.dag)
            blob, error = store.encode(event.input_values)
            write(
                "INSERT INTO runs (run_id, parent_run_id, dag_fingerprint, status, inputs, "
                "started_at) VALUES (?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET "
                "status = excluded.status, finished_at = NULL, error = NULL",
                (event.run_id, event.parent_run_id, self.fingerprint, "running", blob, now),
            )
            if error:
                write(
                    "UPDATE runs SET error = ? WHERE run_id = ?", (f"inputs: {error}", event.run_id)
                )
        elif isinstance(event, StepStarted):
            write(
                "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                "status, inputs_digest, started_at) VALUES (?,?,?,?,?,?,?)",
                (event.run_id, event.node, event.task_name, event.attempt, "running",
                 self._digest_of(event.node), now),
            )  # fmt: skip
        elif isinstance(event, StepCompleted):
            self._remember(event.outputs)
            blob, error = store.encode(event.outputs)
            write(
                "INSERT INTO task_executions (run_id, node, task_name, attempt, status, "
                "inputs_digest, outputs, started_at, finished_at, error, worker) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, node, attempt) DO UPDATE SET "
                "status = excluded.status, outputs = excluded.outputs, "
                "finished_at = excluded.finished_at, error = excluded.error, "
                "worker = excluded.worker",
                (event.run_id, event.node, event.task_name, event.attempt,
                 "cached" if event.cached else "completed", self._digest_of(event.node), blob,
                 now, now, f"outputs not storable: {error}" if error else None, event.worker),
            )  # fmt: skip
            if event.cached:
                # a cache hit is as good as a completion for restart and replay
                write(
                    "UPDATE task_executions SET status = 'completed' "
                    "WHERE run_id = ? AND node = ? AND attempt = ?",
                    (event.run_id, event.node, event.attempt),
                )
        elif isinstance(event, StepRetried | StepFailed):
            attempt = event.attempt - 1 if isinstance(event, StepRetried) else event.attempt
            err = event.error
            write(
                "UPDATE task_executions SET status = 'failed', finished_at = ?, error = ? "
                "WHERE run_id = ? AND node = ? AND attempt = ?",
                (now, f"{err.type}: {err.message}\n{err.traceback}".rstrip(), event.run_id,
                 event.node, attempt),
            )  # fmt: skip
            if isinstance(event, StepRetried):
                write(
                    "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                    "status, inputs_digest, started_at) VALUES (?,?,?,?,?,?,?)",
                    (event.run_id, event.node, event.task_name, event.attempt, "running",
                     self._digest_of(event.node), now + event.delay),
                )  # fmt: skip
        elif isinstance(event, StepCompensated):
            if event.error is None:
                # undone: a restart must do it again, not restore its output
                sql = "UPDATE task_executions SET status = 'compensated' "
                params: tuple[Any, ...] = (event.run_id, event.node)
            else:
                # its effect stands, so its output stays restorable: doing it again would
                # do it twice
                err = event.error
                sql = "UPDATE task_executions SET error = ? "
                failed = f"compensation failed: {err.type}: {err.message}"
                params = (failed, event.run_id, event.node)
            write(sql + "WHERE run_id = ? AND node = ? AND status = 'completed'", params)
        elif isinstance(event, StepSkipped):
            write(
                "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                "status, finished_at, error) VALUES (?,?,?,?,?,?,?)",
                (event.run_id, event.node, event.task_name, 0, "skipped", now,
                 f"skipped: depends on failed task '{event.because_of}'"),
            )  # fmt: skip
        elif isinstance(event, RunFinished):
            error = None if event.error is None else f"{type(event.error).__name__}: {event.error}"
            write(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                (event.status, now, error, event.run_id),
            )
            store.flush()


# Characters kept as they are in a nested run id. The id ends up in NATS subjects (reply and
# cancel subjects), where '.', '*', '>' and whitespace are special, and workers take the run id
# back as the last '.'-separated token; everything else is %-escaped (the '%' too, so distinct
# node names give distinct ids), and '/' is left free to separate the parts.
_NESTED = "/"
_KEPT = frozenset(string.ascii_letters + string.digits + "_-[]")


def nested_run_id(run_id: str, node_name: str) -> str:
    """The run id of the nested run a map node `node_name` of run `run_id` starts: the same on
    every restart, so the nested run can be continued too."""
    escaped = "".join(
        c if c in _KEPT else "".join(f"%{b:02X}" for b in c.encode()) for c in node_name
    )
    return f"{run_id}{_NESTED}{escaped}"


def resumable(
    store: RunStore, dag: DAG, run_id: str, inputs: dict[str, Any]
) -> dict[int, dict[str, Any]] | None:
    """node -> outputs to reuse when `run_id` is stored for `dag` with exactly these inputs;
    None when it is not (the caller then runs afresh: results of other inputs never mix in)."""
    store.flush()
    row = store._db.execute(
        "SELECT dag_fingerprint, inputs FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None or row[1] is None or row[0] != dag_fingerprint(dag):
        return None
    blob, _ = store.encode(inputs)
    # encoded bytes, not ==: 1 == 1.0 == True would pass results of other inputs off as these.
    # Set order differs between processes (hash randomization): re-encoding the decoded stored
    # inputs here evens that out, so a restart in a new process still matches (a mismatch left
    # only costs a fresh run)
    if blob is None or (blob != row[1] and blob != store.encode(store.codec.unpackb(row[1]))[0]):
        return None
    return store.completed_outputs(run_id)


def restorable(
    store: RunStore, dag: DAG, run_id: str, rerun: Iterable[str] = ()
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """(inputs, node -> outputs to reuse) for restarting or replaying `run_id` on `dag`."""
    run = store.get_run(run_id)
    if run["dag_fingerprint"] != dag_fingerprint(dag):
        raise StoreError(
            f"run {run_id!r} was made with a different DAG (tasks or keys changed); "
            "restart and replay need the same DAG"
        )
    outputs = store.completed_outputs(run_id)
    names = set(rerun)
    if names:
        unknown = names - set(dag._names)
        if unknown:
            raise StoreError(f"no task named {sorted(unknown)} in the DAG")
        seeds = [i for i, name in enumerate(dag._names) if name in names]
        for node in (*seeds, *dag.graph.descendants(seeds)):
            outputs.pop(node, None)
    return run["inputs"], outputs
