"""Provenance: a run store fed by the engine's events, for restart and replay (SQLite).

`ExecutionEngine(..., store=RunStore("runs.db"))` records every run (inputs, status, timings)
and every task execution (inputs digest, outputs, status, timings, error, attempt, worker).
Writes are committed once per event-loop turn, in WAL mode, so a process killed mid-run loses at
most the last turn's records: those tasks simply run again on restart.

- `await engine.restart(run_id)` continues a failed or interrupted run without re-running the
  tasks it completed.
- `await engine.replay(run_id, rerun={"task"})` re-runs the named tasks and everything
  downstream of them, reusing every other output; restored values keep their types.
- An output the codec cannot encode (a class without a codec, a value nested too deep) does
  not fail the run; its task is recorded as completed with "outputs not storable", and a
  restart or replay runs it and everything downstream of it again, never mixing a new output
  with dependents computed from the old one.
- The records a task logged while it ran (StepLogged: here or on a worker) are kept with its
  execution in `task_logs`; `task_logs(run_id, task)` reads them back in time order.
- Each run row records its engine's host and pid, and a heartbeat the engine refreshes every
  `heartbeat` seconds: `list_runs()`/`get_run()` report a running row whose engine is gone
  (killed) as 'interrupted'.
- A run row also keeps its number of tasks (grown as tasks add tasks), how many a replay
  reused, and `RunStore(target="module:attr")`: the CLI's target, so that `taskiq-dataflow runs
  restart` can load the DAG again. `recent_runs()` lists the newest with their task counts.

Tasks that tasks add while the run goes on (`add_tasks`, a map node's items) are recorded as
the DAG's own are; a restart restores one when the run adds it again (same name, inputs of the
same digest), so a map's completed items do not run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codec import DEFAULT_CODEC, Codec
from .errors import EncodeError
from .errors import StoreError as StoreError  # its documented path
from .events import (
    Event,
    RunFinished,
    RunGrew,
    RunStarted,
    StepCompensated,
    StepCompleted,
    StepFailed,
    StepLogged,
    StepRetried,
    StepSkipped,
    StepStarted,
)

if TYPE_CHECKING:
    from .dataflow.dag import DAG
    from .dataflow.graph import NodeFields

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    parent_run_id TEXT,
    dag_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    inputs BLOB,
    started_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    owner_host TEXT,
    owner_pid INTEGER,
    heartbeat_at REAL,
    target TEXT,
    total_tasks INTEGER,
    restored_tasks INTEGER
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
CREATE TABLE IF NOT EXISTS task_logs (
    run_id TEXT NOT NULL,
    node INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    task_name TEXT NOT NULL,
    time REAL NOT NULL,
    level TEXT NOT NULL,
    logger TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, node, attempt, seq)
);
"""


# Columns added after the first schema: an existing database gains them in place.
_ADDED_COLUMNS = {
    "runs": {
        "owner_host": "TEXT",
        "owner_pid": "INTEGER",
        "heartbeat_at": "REAL",
        "target": "TEXT",
        "total_tasks": "INTEGER",
        "restored_tasks": "INTEGER",
    }
}
# a task's status in the latest attempt of each of its rows: what a run's counts are made of
_LATEST_ATTEMPTS = (
    "SELECT run_id, status, COUNT(*) FROM task_executions t WHERE run_id IN ({marks}) AND "
    "attempt = (SELECT MAX(attempt) FROM task_executions u WHERE u.run_id = t.run_id AND "
    "u.node = t.node) GROUP BY run_id, status"
)

HEARTBEAT = 2.0  # seconds between a live engine's heartbeats on its running runs
STALE_BEATS = 5  # a running run of another host is interrupted once this many beats are missed
HOST = socket.gethostname()


def _migrate(db: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def dag_fingerprint(dag: DAG) -> str:
    """A digest of the DAG's shape (task names and keys per node): restart needs the same DAG."""
    h = hashlib.blake2b(digest_size=16)
    shape = (dag.task_names, dag.node_inputs, dag.node_outputs, dag.explicit_edges)
    h.update(repr(shape).encode())
    return h.hexdigest()


class RunStore:
    def __init__(
        self,
        path: str | Path = ":memory:",
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
        heartbeat: float = HEARTBEAT,
        target: str | None = None,
    ) -> None:
        if heartbeat <= 0:
            raise ValueError(
                f"RunStore(heartbeat=...) must be a positive number of seconds, got {heartbeat}"
            )
        self.path = str(path)
        self.codec = codec or DEFAULT_CODEC
        self._clock = clock
        self.heartbeat = heartbeat
        # how the runs it records can be loaded again (`module:attr`, by the CLI's `runs
        # restart`): kept in their rows; a restart without one keeps the row's
        self.target = target
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flush_scheduled = False

    # -- writing (fed by events) ----------------------------------------------------------------

    def attach(self, engine: Any) -> _Recording:
        """Record `engine`'s runs; `.detach()` on the result stops it."""
        recording = _Recording(self, engine.dag)
        recording.detach = engine.events.subscribe(recording.on_event)
        return recording

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
        """(blob, None), or (None, why) for a value the codec cannot store: the run goes on
        without it (the task then counts as not stored, see restorable_outputs)."""
        try:
            return self.codec.packb(value), None
        except EncodeError as exc:
            return None, str(exc)
        except (RecursionError, MemoryError) as exc:  # nested beyond what can be encoded
            return None, f"{type(exc).__name__}: {exc}"

    def decode(self, blob: bytes) -> tuple[bool, Any]:
        """(True, value), or (False, None) when a stored blob no longer decodes (a codec that
        was registered when it was written is missing now)."""
        try:
            return True, self.codec.unpackb(blob)
        except Exception:
            return False, None

    # -- reading --------------------------------------------------------------------------------

    def get_run(self, run_id: str, decode: bool = True) -> dict[str, Any]:
        """The run's row; `decode=False` leaves its inputs as the stored blob (or None)."""
        self.flush()
        cur = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in the store at {self.path}")
        run = dict(zip([c[0] for c in cur.description], row, strict=True))
        if decode:
            run["inputs"] = self.codec.unpackb(run["inputs"]) if run["inputs"] is not None else {}
        run["status"] = self._status(run)
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first. A run recorded as running whose engine is gone (killed)
        reports status 'interrupted': restart() continues it."""
        self.flush()
        cur = self._db.execute(
            "SELECT run_id, parent_run_id, status, started_at, finished_at, error, owner_host, "
            "owner_pid, heartbeat_at, target, total_tasks, restored_tasks FROM runs "
            "ORDER BY started_at"
        )
        names = [c[0] for c in cur.description]
        runs = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        for run in runs:
            run["status"] = self._status(run)
        return runs

    def recent_runs(
        self, limit: int | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The `limit` newest runs (of `status`, as list_runs reports it: 'interrupted' and
        'running' told apart), newest first, each with `counts`: its tasks by the status of
        their latest attempt (completed, failed, skipped, running, compensated)."""
        runs = self.list_runs()
        runs.reverse()
        if status is not None:
            runs = [run for run in runs if run["status"] == status]
        if limit is not None:
            runs = runs[:limit]
        counts = self.task_counts([run["run_id"] for run in runs])
        for run in runs:
            run["counts"] = counts[run["run_id"]]
        return runs

    def task_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Run id -> its tasks by the status of their latest attempt."""
        self.flush()
        counts: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        ids = list(counts)
        for start in range(0, len(ids), 500):  # SQLite bounds the parameters of one statement
            chunk = ids[start : start + 500]
            sql = _LATEST_ATTEMPTS.format(marks=",".join("?" * len(chunk)))
            for run_id, task_status, count in self._db.execute(sql, chunk):
                counts[run_id][task_status] = count
        return counts

    def run_ids(self, prefix: str, limit: int = 20) -> list[str]:
        """Up to `limit` run ids that start with `prefix` (a run named like git's commits)."""
        self.flush()
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY started_at LIMIT ?",
            (len(prefix), prefix, limit),
        ).fetchall()
        return [row[0] for row in rows]

    def _status(self, run: dict[str, Any]) -> str:
        """'interrupted' for a running row whose owner is gone: on this host its process is
        dead; on another host (no pid to look at) its heartbeat is STALE_BEATS beats late.
        A row written before owners were recorded has no owner to judge: it stays running."""
        status: str = run["status"]
        if status != "running" or run["owner_pid"] is None:
            return status
        if run["owner_host"] == HOST:
            gone = not _pid_alive(run["owner_pid"])
        else:
            late = self._clock() - (run["heartbeat_at"] or run["started_at"])
            gone = late > STALE_BEATS * self.heartbeat
        return "interrupted" if gone else "running"

    def get_task_executions(self, run_id: str, decode: bool = True) -> list[dict[str, Any]]:
        """Every attempt of every task of the run, outputs decoded (`decode=False`: left as
        the stored blobs)."""
        self.flush()
        cur = self._db.execute(
            "SELECT * FROM task_executions WHERE run_id = ? ORDER BY started_at, node, attempt",
            (run_id,),
        )
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        if decode:
            for row in rows:
                if row["outputs"] is not None:
                    row["outputs"] = self.codec.unpackb(row["outputs"])
        return rows

    def task_logs(self, run_id: str, task: str | None = None) -> list[dict[str, Any]]:
        """The records the run's tasks logged (only `task`'s, if given), oldest first: dicts
        of node, task_name, attempt, time (epoch seconds), level, logger, message."""
        self.flush()
        db = self._db
        if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise StoreError(f"no run {run_id!r} in the store at {self.path}")
        sql = (
            "SELECT node, task_name, attempt, time, level, logger, message FROM task_logs "
            "WHERE run_id = ?"
        )
        params: tuple[Any, ...] = (run_id,)
        if task is not None:
            known = db.execute(
                "SELECT 1 FROM task_executions WHERE run_id = ? AND task_name = ? LIMIT 1",
                (run_id, task),
            ).fetchone()
            if known is None:
                raise StoreError(f"run {run_id!r} has no task named {task!r} (store {self.path})")
            sql += " AND task_name = ?"
            params = (run_id, task)
        cur = db.execute(sql + " ORDER BY time, node, attempt, seq", params)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def completed_outputs(self, run_id: str) -> dict[int, dict[str, Any]]:
        """node -> its outputs, for every task the run completed with storable outputs."""
        return self._completed(run_id)[0]

    def _completed(self, run_id: str) -> tuple[dict[int, dict[str, Any]], list[int]]:
        """(node -> outputs of the completed tasks whose outputs are stored, the completed
        tasks whose outputs were not storable or no longer decode)."""
        self.flush()
        rows = self._db.execute(
            "SELECT node, outputs FROM task_executions WHERE run_id = ? AND status = 'completed'",
            (run_id,),
        ).fetchall()
        outputs: dict[int, dict[str, Any]] = {}
        unstored: list[int] = []
        for node, blob in rows:
            ok, value = (False, None) if blob is None else self.decode(blob)
            if ok and isinstance(value, dict):
                outputs[node] = value
            else:
                unstored.append(node)
        return outputs, unstored

    def discard(self, run_id: str) -> None:
        """Forget a run and its task executions (queued like event writes, so a run that starts
        afresh under the same id right after keeps none of its old rows)."""
        for table in ("task_logs", "task_executions", "runs"):
            self._write(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def close(self) -> None:
        self.flush()
        self._db.close()


class _Recording:
    """One engine's event subscription: turns events into rows, and keeps a heartbeat on the
    runs it is recording so that list_runs can tell them from runs whose engine died."""

    def __init__(self, store: RunStore, dag: DAG) -> None:
        self.store, self.dag = store, dag
        self.detach: Callable[[], None] = lambda: None
        # run -> key -> digest of its value: per run, since runs of one engine may overlap
        self.digests: dict[str, dict[str, bytes]] = {}
        # run -> node -> input keys, for the tasks its tasks added (not in the DAG)
        self.added_inputs: dict[str, dict[int, Sequence[str]]] = {}
        # run -> task name -> (inputs digest, outputs) of the added tasks a restarted run
        # completed before: restored when a task adds the same task again
        self.added_rows: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
        self.offsets: dict[str, int] = {}  # run -> what its added tasks' row numbers are moved by
        self.fingerprint: str | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._beat_loop: asyncio.AbstractEventLoop | None = None

    def _digest_of(self, run_id: str, node: int) -> str:
        if node < len(self.dag):
            return self._digest_keys(run_id, self.dag.node_inputs[node])
        return self._digest_keys(run_id, self.added_inputs.get(run_id, {}).get(node, ()))

    def _digest_keys(self, run_id: str, keys: Sequence[str]) -> str:
        h = hashlib.blake2b(digest_size=16)
        digests = self.digests.get(run_id, {})
        for key in keys:
            h.update(digests.get(key, b"?"))
        return h.hexdigest()

    # -- tasks added while a run goes on (RunState.add_tasks asks) ----------------------------

    def restorable_added(
        self, run_id: str, fields: Sequence[NodeFields], given: Mapping[str, Any]
    ) -> dict[int, dict[str, Any]]:
        """Index in `fields` -> outputs, for the tasks a restart adds again that the run
        completed before with the same inputs (by digest, as the DAG's own tasks are kept)."""
        if given:
            self._remember(run_id, dict(given))
        stored = self.added_rows.get(run_id)
        if not stored:
            return {}
        found: dict[int, dict[str, Any]] = {}
        for i, f in enumerate(fields):
            row = stored.get(f.name)
            if row is not None and row[0] == self._digest_keys(run_id, f.inputs):
                found[i] = row[1]
                self._remember(run_id, row[1])  # what its dependents' digests are made of
        return found

    def added(self, run_id: str, first: int, fields: Sequence[NodeFields]) -> None:
        """Tasks `first..` of the run are `fields`: their rows digest their inputs."""
        inputs = self.added_inputs.setdefault(run_id, {})
        for node, f in enumerate(fields, first):
            inputs[node] = f.inputs

    def restarting(self, run_id: str) -> None:
        """`run_id` continues a stored run: keep its added tasks' completed rows at hand (read
        before this run writes rows of its own over their node ids)."""
        self.store.flush()
        db, n = self.store._db, len(self.dag)
        last = db.execute(
            "SELECT MAX(node) FROM task_executions WHERE run_id = ?", (run_id,)
        ).fetchone()[0]
        self.offsets[run_id] = max(0, last + 1 - n) if last is not None else 0
        rows = db.execute(
            "SELECT task_name, inputs_digest, outputs FROM task_executions "
            "WHERE run_id = ? AND node >= ? AND status = 'completed' ORDER BY started_at",
            (run_id, n),
        ).fetchall()
        kept: dict[str, tuple[str, dict[str, Any]]] = {}
        for name, digest, blob in rows:
            ok, value = (False, None) if blob is None else self.store.decode(blob)
            if ok and isinstance(value, dict) and digest is not None:
                kept[name] = (digest, value)
        self.added_rows[run_id] = kept

    def _remember(self, run_id: str, values: dict[str, Any]) -> None:
        digests = self.digests.setdefault(run_id, {})
        for key, value in values.items():
            blob, _ = self.store.encode(value)
            digests[key] = hashlib.blake2b(blob or _unstorable(value), digest_size=16).digest()

    # -- heartbeat ------------------------------------------------------------------------------

    def _start_beating(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no live run to beat for
        if self._beat is None or self._beat.cancelled() or self._beat_loop is not loop:
            self._beat_loop = loop
            self._beat = loop.call_later(self.store.heartbeat, self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = None
        live = list(self.digests)
        if not live:
            return
        marks = ",".join("?" * len(live))
        self.store._write(
            f"UPDATE runs SET heartbeat_at = ? WHERE status = 'running' AND run_id IN ({marks})",
            (self.store._clock(), *live),
        )
        self._start_beating()

    def _stop_beating(self) -> None:
        if not self.digests and self._beat is not None:
            self._beat.cancel()
            self._beat = None

    # -- events ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        store, now = self.store, self.store._clock()
        write = store._write
        # the row of a step: added tasks of a restarted run are numbered after the rows of the
        # run it continues, which keep their own (restorable_added finds them by name)
        node = getattr(event, "node", 0)
        if node >= len(self.dag) and event.run_id in self.offsets:
            node += self.offsets[event.run_id]
        if isinstance(event, RunStarted):
            self.digests[event.run_id] = {}
            self._remember(event.run_id, event.input_values)
            self._remember(event.run_id, event.restored_values)
            if self.fingerprint is None:
                self.fingerprint = dag_fingerprint(self.dag)
            blob, error = store.encode(event.input_values)
            write(
                "INSERT INTO runs (run_id, parent_run_id, dag_fingerprint, status, inputs, "
                "started_at, owner_host, owner_pid, heartbeat_at, target, total_tasks, "
                "restored_tasks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(run_id) DO UPDATE SET status = excluded.status, finished_at = NULL, "
                "error = NULL, owner_host = excluded.owner_host, owner_pid = excluded.owner_pid, "
                "heartbeat_at = excluded.heartbeat_at, "
                "target = COALESCE(excluded.target, runs.target), "
                "total_tasks = excluded.total_tasks, restored_tasks = excluded.restored_tasks",
                (event.run_id, event.parent_run_id, self.fingerprint, "running", blob, now, HOST,
                 os.getpid(), now, store.target, event.total, event.restored),
            )  # fmt: skip
            if error:
                write(
                    "UPDATE runs SET error = ? WHERE run_id = ?", (f"inputs: {error}", event.run_id)
                )
            self._start_beating()
        elif isinstance(event, StepStarted):
            write(
                "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                "status, inputs_digest, started_at) VALUES (?,?,?,?,?,?,?)",
                (event.run_id, node, event.task_name, event.attempt, "running",
                 self._digest_of(event.run_id, event.node), now),
            )  # fmt: skip
        elif isinstance(event, StepLogged):
            # a restarted run's execution of the same attempt replaces the earlier one's
            write(
                "DELETE FROM task_logs WHERE run_id = ? AND node = ? AND attempt = ?",
                (event.run_id, node, event.attempt),
            )
            for seq, entry in enumerate(event.records):
                write(
                    "INSERT INTO task_logs (run_id, node, attempt, seq, task_name, time, level, "
                    "logger, message) VALUES (?,?,?,?,?,?,?,?,?)",
                    (event.run_id, node, event.attempt, seq, event.task_name, entry.time,
                     entry.level, entry.logger, entry.message),
                )  # fmt: skip
        elif isinstance(event, StepCompleted):
            self._remember(event.run_id, event.outputs)
            blob, error = store.encode(event.outputs)
            write(
                "INSERT INTO task_executions (run_id, node, task_name, attempt, status, "
                "inputs_digest, outputs, started_at, finished_at, error, worker) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, node, attempt) DO UPDATE SET "
                "status = excluded.status, outputs = excluded.outputs, "
                "finished_at = excluded.finished_at, error = excluded.error, "
                "worker = excluded.worker",
                (event.run_id, node, event.task_name, event.attempt,
                 "cached" if event.cached else "completed",
                 self._digest_of(event.run_id, event.node), blob, now, now,
                 f"outputs not storable: {error}" if error else None, event.worker),
            )  # fmt: skip
            if event.cached:
                # a cache hit is as good as a completion for restart and replay
                write(
                    "UPDATE task_executions SET status = 'completed' "
                    "WHERE run_id = ? AND node = ? AND attempt = ?",
                    (event.run_id, node, event.attempt),
                )
        elif isinstance(event, StepRetried | StepFailed):
            attempt = event.attempt - 1 if isinstance(event, StepRetried) else event.attempt
            err = event.error
            write(
                "UPDATE task_executions SET status = 'failed', finished_at = ?, error = ? "
                "WHERE run_id = ? AND node = ? AND attempt = ?",
                (now, f"{err.type}: {err.message}\n{err.traceback}".rstrip(), event.run_id,
                 node, attempt),
            )  # fmt: skip
            if isinstance(event, StepRetried):
                write(
                    "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                    "status, inputs_digest, started_at) VALUES (?,?,?,?,?,?,?)",
                    (event.run_id, node, event.task_name, event.attempt, "running",
                     self._digest_of(event.run_id, event.node), now + event.delay),
                )  # fmt: skip
        elif isinstance(event, StepCompensated):
            if event.error is None:
                # undone: a restart must do it again, not restore its output
                sql = "UPDATE task_executions SET status = 'compensated' "
                params: tuple[Any, ...] = (event.run_id, node)
            else:
                # its effect stands, so its output stays restorable: doing it again would
                # do it twice
                err = event.error
                sql = "UPDATE task_executions SET error = ? "
                failed = f"compensation failed: {err.type}: {err.message}"
                params = (failed, event.run_id, node)
            write(sql + "WHERE run_id = ? AND node = ? AND status = 'completed'", params)
        elif isinstance(event, StepSkipped):
            write(
                "INSERT OR REPLACE INTO task_executions (run_id, node, task_name, attempt, "
                "status, finished_at, error) VALUES (?,?,?,?,?,?,?)",
                (event.run_id, node, event.task_name, 0, "skipped", now,
                 f"skipped: depends on failed task '{event.because_of}'"),
            )  # fmt: skip
        elif isinstance(event, RunGrew):
            write("UPDATE runs SET total_tasks = ? WHERE run_id = ?", (event.total, event.run_id))
        elif isinstance(event, RunFinished):
            error = None if event.error is None else f"{type(event.error).__name__}: {event.error}"
            write(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                (event.status, now, error, event.run_id),
            )
            self.digests.pop(event.run_id, None)
            self.added_inputs.pop(event.run_id, None)
            self.added_rows.pop(event.run_id, None)
            self.offsets.pop(event.run_id, None)
            self._stop_beating()
            store.flush()


def _unstorable(value: Any) -> bytes:
    """What an output the codec cannot encode is digested by: its repr when it has one that
    can be computed (it may still embed an address, then digests differ between runs)."""
    try:
        return b"repr:" + repr(value).encode()
    except Exception:  # a repr that raises, or recursion too deep
        return b"type:" + type(value).__qualname__.encode()


def restorable_outputs(store: RunStore, dag: DAG, run_id: str) -> dict[int, dict[str, Any]]:
    """node -> outputs to reuse from `run_id`. A task completed without a stored output runs
    again, so everything downstream of it runs again too: reusing a dependent's stored output
    would mix two executions' results (and repeat the task's side effects under old ones)."""
    outputs, unstored = store._completed(run_id)
    # rows of tasks added at run time are restored when they are added again (restorable_added)
    n = len(dag)
    if any(node >= n for node in outputs):
        outputs = {node: outs for node, outs in outputs.items() if node < n}
    unstored = [node for node in unstored if node < n]
    if unstored:
        for node in (*unstored, *dag.graph.descendants(unstored)):
            outputs.pop(node, None)
    return outputs


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
    outputs = restorable_outputs(store, dag, run_id)
    names = set(rerun)
    if names:
        unknown = {name for name in names if not dag.ids_named(name)}
        if unknown:
            raise StoreError(f"no task named {sorted(unknown)} in the DAG")
        seeds = sorted(i for name in names for i in dag.ids_named(name))
        for node in (*seeds, *dag.graph.descendants(seeds)):
            outputs.pop(node, None)
    return run["inputs"], outputs
