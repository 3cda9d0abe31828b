"""A bystander client publishes hostile frames (deep nesting, oversized, garbage, a wrong version,
wrong field types) on the tasks, heartbeat, results and cancel subjects, and on a stream's
items and credit subjects, while a run is in progress. The engine (a process of its own), the
real `taskiq-dataflow worker` processes and their supervisor keep serving: the run completes
with the right results, computed by the same worker processes, none of which died or was
restarted.

Forged frames that are well formed (a result for a real task, a rejection of the run) are the
cluster drills' subject (tests/e2e/test_cluster_*.py); these frames are all malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from typing import Any

import msgpack
import pytest
from taskiq_dataflow.cluster.protocol import VERSION as V

from .support import E2E, TESTS, URL_ENV, Processes, Server, Workers, bystander, wait_until

pytestmark = pytest.mark.e2e

PREFIX = "dataflow"
TASKS_SUBJECT = f"{PREFIX}.tasks.default"
HEARTBEAT_SUBJECT = f"{PREFIX}.heartbeat"
PING_SUBJECT = f"{PREFIX}.ping"  # an engine asks every worker to heart-beat now
RUN_SECONDS_BOUND = 30.0  # the run alone takes about 1.5 s
N, DELAY = 24, 0.25  # 24 tasks of 0.25 s, 4 at a time
STREAM_ITEMS, STREAM_DELAY = 30, 0.05  # a producer streaming to a consumer for 1.5 s
# engine_run.py's graph: independent tasks, or (for the stream subjects) a stream
GRAPHS = (["spread", str(N), str(DELAY)], ["stream", str(STREAM_ITEMS), str(STREAM_DELAY)])
ROUND_INTERVAL = 0.3
DEPTH = 5_000  # the decoder crashed (SIGSEGV) at about 200 levels
_MARK = "\0value\0"


# -- hostile frames ---------------------------------------------------------------------------


def deep_tuples(depth: int) -> bytes:
    """An encoded value: a tuple in a tuple ... `depth` times (protocol extension type 1)."""
    data = msgpack.packb(0)
    for _ in range(depth):
        data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
    return data


def deep_lists(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def frame(fields: dict[str, Any], value: bytes | None = None) -> bytes:
    """A msgpack map of `fields` in which the string _MARK stands for the raw bytes `value`."""
    data = msgpack.packb(fields, use_bin_type=True)
    if value is not None:
        mark = msgpack.packb(_MARK)
        assert data.count(mark) == 1
        data = data.replace(mark, value)
    return data


def garbage() -> list[tuple[str, bytes]]:
    rng = random.Random(9)
    return [
        ("empty", b""),
        ("never-used byte", b"\xc1"),
        ("random bytes", bytes(rng.randrange(256) for _ in range(200))),
        ("an array claiming 4G items", b"\xdd\xff\xff\xff\xff"),
        ("a bin claiming 4 GB", b"\xc6\xff\xff\xff\xff"),
        ("a map claiming 4G pairs", b"\xdf\xff\xff\xff\xff\x01"),
        ("a truncated frame", msgpack.packb({"v": V, "t": "tasks", "run": "r"})[:-3]),
        ("not a map", msgpack.packb([1, "tasks"])),
        ("deep plain lists", deep_lists(100_000)),
        ("deep tuples", deep_tuples(DEPTH)),
        ("an unknown extension type", msgpack.packb(msgpack.ExtType(63, b"??"))),
        ("a map keyed by lists", b"\x81\x91\x01\x02"),
    ]


def shaped(kind: str, fields: dict[str, Any], max_payload: int) -> list[tuple[str, bytes]]:
    """Frames of the right kind with a deep, oversized, mistyped or wrongly versioned part."""
    base = {"v": V, "t": kind, **fields}
    pad = max_payload - 1024
    return [
        ("the next version", frame({**base, "v": V + 1})),
        ("the version before", frame({**base, "v": V - 1})),
        ("the version as a string", frame({**base, "v": str(V)})),
        ("a version that is a list", frame({**base, "v": [V]})),
        ("no version", frame({k: v for k, v in base.items() if k != "v"})),
        ("no kind", frame({k: v for k, v in base.items() if k != "t"})),
        ("an unknown kind", frame({**base, "t": "bogus"})),
        ("a kind that is a list", frame({**base, "t": [kind]})),
        ("deep tuples in a field", frame({**base, "x": _MARK}, deep_tuples(DEPTH))),
        ("deep lists in a field", frame({**base, "x": _MARK}, deep_lists(100_000))),
        ("an oversized field", frame({**base, "x": b"\0" * pad})),
    ]


def tasks_frames(inbox: str, max_payload: int) -> list[tuple[str, bytes]]:
    """On the pool's tasks subject; replies (rejections) go to the bystander's own inbox."""
    task = ["e2e_tasks:where", [0], {}, None]
    base = {"run": "bystander", "reply": inbox}
    entries = [
        ("deep tuples as an argument", [[1, ["e2e_tasks:where", [_MARK], {}, None]]]),
        ("wrong entry shapes", [[1], ["a", "b"], [None, task], [1, [1, 2]], 7, "x", [[1], {}]]),
        ("a negative and a huge seq", [[-1, task], [2**63, task]]),
        ("an unhashable seq", [[[1], task], [{"a": 1}, task]]),
        ("wrong argument types", [[1, ["e2e_tasks:where", "x", [], None]], [2, [5, [], {}, 0]]]),
        ("a stream spec of garbage", [[1, [*task, [True, ["not a stream ref"]]]]]),
        ("20,000 malformed entries", [[i] for i in range(20_000)]),
        ("an oversized argument", [[1, ["e2e_tasks:nope", [b"\0" * (max_payload - 1024)], {}, 0]]]),
    ]
    deep = deep_tuples(DEPTH)
    frames = [
        (name, frame({"v": V, "t": "tasks", **base, "tasks": tasks}, deep if i == 0 else None))
        for i, (name, tasks) in enumerate(entries)
    ]
    mistyped = [
        ("tasks that is a string", frame({"v": V, "t": "tasks", **base, "tasks": "x"})),
        ("a run that is a list", frame({"v": V, "t": "tasks", **base, "run": [1], "tasks": []})),
        ("a reply that is a map", frame({"v": V, "t": "tasks", **base, "reply": {}, "tasks": []})),
        ("no tasks", frame({"v": V, "t": "tasks", **base})),
    ]
    return frames + mistyped + shaped("tasks", {**base, "tasks": [[1, task]]}, max_payload)


def heartbeat_frames(max_payload: int) -> list[tuple[str, bytes]]:
    # a bystander's own worker id, pool and no inbox: one that pretends to be a worker (a
    # real worker's id, or an inbox to attract work) forges, and forgery is another drill's
    beat = {"w": "bystander-1-ffffff", "pool": "bystander", "n": 0}
    mistyped = [
        ("a worker id that is a list", frame({"v": V, "t": "hb", **beat, "w": [1]})),
        ("a worker id that is a map", frame({"v": V, "t": "hb", **beat, "w": {"a": 1}})),
        ("no worker id", frame({"v": V, "t": "hb", "pool": "bystander"})),
        ("a pool that is a list", frame({"v": V, "t": "hb", **beat, "pool": ["default"]})),
        ("a count that is a string", frame({"v": V, "t": "hb", **beat, "n": "many"})),
        ("an inbox that is a list", frame({"v": V, "t": "hb", **beat, "inbox": ["x"]})),
        ("an inbox that is a number", frame({"v": V, "t": "hb", **beat, "inbox": 7})),
        ("a capacity that is a string", frame({"v": V, "t": "hb", **beat, "cap": "all"})),
        ("a negative capacity", frame({"v": V, "t": "hb", **beat, "cap": -5})),
        ("a capacity that is a map", frame({"v": V, "t": "hb", **beat, "cap": {}})),
        ("a deep worker id", frame({"v": V, "t": "hb", **beat, "w": _MARK}, deep_tuples(DEPTH))),
    ]
    return mistyped + shaped("hb", beat, max_payload)


def results_frames(max_payload: int) -> list[tuple[str, bytes]]:
    """On the run's own reply subject: entries no worker would send (none is a valid result of
    a real task: that would be a forgery)."""
    head = {"v": V, "t": "results", "w": "bystander-1-ffffff"}
    entries = [
        ("a results list that is a string", "x"),
        ("short entries", [[1, True], [2], []]),
        ("long entries", [[1, True, 1, 1]]),
        ("entries that are not lists", [1, "x", None, {"a": 1}]),
        ("an unhashable seq", [[[1], True, 1], [{"a": 1}, False, 1]]),
        ("a negative seq", [[-5, True, 1], [-(2**63), False, ["E", "m", "t"]]]),
        ("a seq that was never sent", [[2**63, True, 1], [10**9, False, ["E", "m", "t"]]]),
        ("a failure of the wrong shape", [[10**9, False, "not a triple"], [10**9, False, None]]),
        ("20,000 malformed entries", [[i] for i in range(20_000)]),
    ]
    frames = [(name, frame({**head, "results": results})) for name, results in entries]
    mistyped = [
        ("a worker id that is a list", frame({**head, "w": [1], "results": []})),
        ("claims that are a string", frame({**head, "results": [], "claims": "x"})),
        ("claims of lists", frame({**head, "results": [], "claims": [[1], {"a": 1}]})),
        ("deep results", frame({**head, "results": _MARK}, deep_tuples(DEPTH))),
        ("a deep value", frame({**head, "results": [[10**9, True, _MARK]]}, deep_tuples(DEPTH))),
    ]
    return frames + mistyped + shaped("results", {"w": head["w"], "results": []}, max_payload)


def stream_frames(max_payload: int) -> list[tuple[str, bytes]]:
    """On a stream route's items and credit subjects: malformed items, ends and credits (an
    item with a plausible seq and value would be a forgery)."""
    items = [
        ("items that are a string", {"t": "items", "i": "x"}),
        ("short items", {"t": "items", "i": [[1], []]}),
        ("items that are not lists", {"t": "items", "i": [1, None, {"a": 1}]}),
        ("an unhashable item seq", {"t": "items", "i": [[[1], 1], [{"a": 1}, 2]]}),
        ("a string item seq", {"t": "items", "i": [["a", 1]]}),
        ("an end with a count that is a string", {"t": "end", "n": "many"}),
        ("credits of the wrong types", {"t": "credit", "got": "x", "limit": [], "r": {}}),
        ("a credit with no fields", {"t": "credit"}),
    ]
    frames = [(name, frame({"v": V, **fields})) for name, fields in items]
    deep = ("deep items", frame({"v": V, "t": "items", "i": _MARK}, deep_tuples(DEPTH)))
    return [*frames, deep, *shaped("items", {"i": []}, max_payload)]


def cancel_frames(max_payload: int) -> list[tuple[str, bytes]]:
    return shaped("cancel", {}, max_payload)


# -- the drill --------------------------------------------------------------------------------


class Snoop:
    """What a bystander allowed to subscribe sees of the run before the attack: its id, its
    reply subject and the subjects its task frames go to (a pool's, a worker's own), read with
    plain msgpack (extension values are not decoded)."""

    def __init__(self) -> None:
        self.run: str | None = None
        self.reply: str | None = None
        self.task_subjects: set[str] = {TASKS_SUBJECT}
        self.stream_subjects: set[str] = set()
        self.inbox_replies: list[bytes] = []
        self.frozen = False

    async def on_any(self, msg: Any) -> None:
        if self.frozen:
            return
        if msg.subject.startswith((f"{PREFIX}.stream.", f"{PREFIX}.credit.")):
            self.stream_subjects.add(msg.subject)
        with contextlib.suppress(Exception):
            fields = msgpack.unpackb(msg.data, raw=False, strict_map_key=False)
            if fields.get("t") == "tasks" and isinstance(fields.get("reply"), str):
                self.run, self.reply = fields["run"], fields["reply"]
                self.task_subjects.add(msg.subject)

    async def on_inbox(self, msg: Any) -> None:
        self.inbox_replies.append(msg.data)


def start_engine(procs: Processes, server: Server, graph: list[str]):
    # the broker's default heartbeat timeout: a worker that takes a second to wade through a
    # round of junk on a loaded machine is slow, not dead
    env = procs.env({URL_ENV: server.url, "E2E_HEARTBEAT_TIMEOUT": "3.0"}, pythonpath=[E2E, TESTS])
    log = procs.home / f"engine-{time.monotonic_ns()}.log"
    cmd = [sys.executable, str(E2E / "engine_run.py"), *graph]
    return procs.spawn(cmd, env=env, log=log), log


def targets(kind: str, snoop: Snoop) -> list[str]:
    """Where a bystander aims: the subjects task frames were seen on, the heartbeat and ping
    subjects, the run's reply subject, and the cancel subjects it can guess (the real one is
    named after a secret that only the run's task frames carry: who can read those is inside
    the trust boundary, and an empty message there is a cancellation)."""
    if kind == "tasks":
        return sorted(snoop.task_subjects)
    if kind == "heartbeat":
        return [HEARTBEAT_SUBJECT, PING_SUBJECT]
    if kind == "results":
        return [snoop.reply]
    if kind == "streams":
        return sorted(snoop.stream_subjects)
    return [f"{PREFIX}.cancel.{snoop.run}", f"{PREFIX}.cancel.bystander"]


def catalogue(kind: str, inbox: str, max_payload: int) -> list[tuple[str, bytes]]:
    if kind == "tasks":
        return garbage() + tasks_frames(inbox, max_payload)
    if kind == "heartbeat":
        return garbage() + heartbeat_frames(max_payload)
    if kind == "results":
        return garbage() + results_frames(max_payload)
    if kind == "streams":
        return garbage() + stream_frames(max_payload)
    return garbage() + cancel_frames(max_payload)


async def attack(kind: str, procs: Processes, server: Server) -> tuple[Any, str, Snoop, int]:
    """Start a run, then publish every hostile frame at its subjects until the run ends."""
    snoop = Snoop()
    async with bystander(server.url) as nc:
        inbox = nc.new_inbox()
        await nc.subscribe(f"{PREFIX}.>", cb=snoop.on_any)
        await nc.subscribe(inbox, cb=snoop.on_inbox)
        await nc.flush()
        engine, log = start_engine(procs, server, GRAPHS[kind == "streams"])

        def seen() -> bool:
            return snoop.reply is not None and (kind != "streams" or bool(snoop.stream_subjects))

        deadline = time.monotonic() + RUN_SECONDS_BOUND
        while not seen() and engine.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert seen(), f"the run's frames were not seen; engine log:\n{log_of(log)}"
        await asyncio.sleep(0.1)  # the first frames to each worker
        snoop.frozen = True
        frames = catalogue(kind, inbox, nc.max_payload)
        rounds = 0
        while engine.poll() is None and time.monotonic() < deadline:
            for subject in targets(kind, snoop):
                for _name, data in frames:
                    await nc.publish(subject, data)
            await nc.flush()
            rounds += 1
            # malformation is the drill, not a flood: a round every ROUND_INTERVAL s
            await asyncio.sleep(ROUND_INTERVAL)
        with contextlib.suppress(Exception):
            engine.wait(max(0.1, deadline - time.monotonic()))
        await asyncio.sleep(0.5)  # the inbox replies of the last round
    return engine, log_of(log), snoop, rounds


def log_of(path: Any) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def outcome(log: str) -> dict[str, Any]:
    lines = [ln for ln in log.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def assert_served(workers: Workers, pids: set[int], what: str) -> None:
    assert workers.process.poll() is None, (
        f"the worker supervisor exited with {workers.process.returncode} after {what}; "
        f"log:\n{workers.log()}"
    )
    now = workers.beating_pids()
    assert now == pids, (
        f"worker processes died or were restarted after {what}: before {sorted(pids)}, after "
        f"{sorted(now)}; log:\n{workers.log()}"
    )


def assert_completed(engine: Any, log: str, pids: set[int], what: str) -> None:
    assert engine.returncode is not None, f"the run did not end within {RUN_SECONDS_BOUND} s"
    result = outcome(log)
    if engine.returncode < 0:
        name = signal.Signals(-engine.returncode).name
        raise AssertionError(f"the engine process died of {name} under {what}; log:\n{log}")
    assert engine.returncode == 0 and "results" in result, (
        f"the run failed under {what} (engine exit {engine.returncode}): "
        f"{result.get('error', 'no outcome printed')}\nengine log:\n{log}"
    )
    results = result["results"]
    if "heard" in results:
        assert results["heard"]["items"] == list(range(STREAM_ITEMS)), results
        assert results["heard"]["pid"] in pids, results
    else:
        assert sorted(results) == sorted(f"k{i}" for i in range(N)), results
        for i in range(N):
            assert results[f"k{i}"]["i"] == i, results
            assert results[f"k{i}"]["pid"] in pids, (
                f"task k{i} ran in pid {results[f'k{i}']['pid']}, not a worker of {sorted(pids)}"
            )
    assert result["seconds"] < RUN_SECONDS_BOUND
    assert "Traceback" not in log, f"the engine printed a traceback under {what}:\n{log}"


@pytest.mark.parametrize("kind", ["tasks", "heartbeat", "results", "cancel", "streams"])
def test_hostile_frames_on_a_subject_leave_the_run_and_the_workers_serving(
    kind: str, procs: Processes, e2e_server: Server, e2e_workers: Workers
):
    pids = e2e_workers.beating_pids()
    assert len(pids) == 2, e2e_workers.log()
    engine, log, snoop, rounds = asyncio.run(attack(kind, procs, e2e_server))
    what = f"{rounds} round(s) of hostile frames on the {kind} subject"
    assert rounds >= 1, f"the run ended before any hostile frame was sent:\n{log}"
    assert_completed(engine, log, pids, what)
    assert_served(e2e_workers, pids, what)
    if kind == "tasks":
        # the frames reached the workers, which said why they refused them
        assert snoop.inbox_replies, f"no worker answered a hostile frame; {e2e_workers.log()}"
    assert "Traceback" not in e2e_workers.log(), (
        f"a worker printed a traceback under {what}:\n{e2e_workers.log()}"
    )


def test_a_worker_answers_a_too_deep_task_with_a_protocol_error(
    e2e_server: Server, e2e_workers: Workers
):
    """Deep nesting is bad input, not a crash: the sender hears why its frame was refused."""
    pids = e2e_workers.beating_pids()

    async def ask() -> list[Any]:
        async with bystander(e2e_server.url) as nc:
            inbox = nc.new_inbox()
            replies: list[Any] = []

            async def on_reply(msg: Any) -> None:
                replies.append(msgpack.unpackb(msg.data, raw=False, strict_map_key=False))

            await nc.subscribe(inbox, cb=on_reply)
            tasks = [[1, ["e2e_tasks:where", [_MARK], {}, None]]]
            fields = {"v": V, "t": "tasks", "run": "bystander", "reply": inbox, "tasks": tasks}
            await nc.publish(TASKS_SUBJECT, frame(fields, deep_tuples(DEPTH)))
            await nc.flush()
            deadline = time.monotonic() + 10
            while not replies and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return replies

    replies = asyncio.run(ask())
    assert replies, f"no worker answered a frame nested {DEPTH} deep within 10 s"
    entries = [entry for reply in replies for entry in reply.get("results", ())]
    assert len(entries) == 1 and entries[0][1] is False, replies
    kind, message = entries[0][2][0], entries[0][2][1]
    assert kind == "ProtocolError", entries
    assert any(word in message.lower() for word in ("deep", "nest", "depth")), (
        f"the refusal does not say the frame is nested too deep: {message!r}"
    )
    wait_until(lambda: e2e_workers.beating_pids() == pids, 5, "the same worker processes")
    assert_served(e2e_workers, pids, "a frame nested too deep")
