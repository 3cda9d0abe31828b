"""Tasks for the cluster integration tests, imported by the test process and by the workers.

Workers load it as `cluster_tasks:broker` (PYTHONPATH=tests) so that task names are the same on
both sides. The server (DATAFLOW_NATS_URL, read by DataflowNatsBroker itself) and credentials
come from the environment the test fixture sets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os

from pydantic import BaseModel
from taskiq_dataflow import pipeline_task
from taskiq_dataflow.cluster import Codec, DataflowNatsBroker
from taskiq_dataflow.cluster.broker import NATS_URL_ENV

URL_ENV = NATS_URL_ENV  # DATAFLOW_NATS_URL: the broker's own default for `servers`
USER_ENV = "DATAFLOW_TEST_NATS_USER"
PASSWORD_ENV = "DATAFLOW_TEST_NATS_PASSWORD"
POOL_ENV = "DATAFLOW_TEST_POOL"
# a worker pool whose large_value_threshold is above the server's max_payload
THRESHOLD_ENV = "DATAFLOW_TEST_LARGE_VALUE_THRESHOLD"


class Money:
    """A user type that only travels because of the codec extension registered below."""

    def __init__(self, amount: int, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.amount, self.currency) == (
            other.amount,
            other.currency,
        )

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def __repr__(self) -> str:
        return f"Money({self.amount}, {self.currency!r})"


def _encode_money(m: Money) -> bytes:
    return f"{m.amount}:{m.currency}".encode()


def _decode_money(data: bytes) -> Money:
    amount, currency = data.decode().split(":")
    return Money(int(amount), currency)


codec = Codec()
codec.register(Money, 64, _encode_money, _decode_money)


class Inner(BaseModel):
    label: str
    when: dt.datetime


class Reading(BaseModel):
    sensor: str
    values: list[float]
    inner: Inner
    tags: set[str] = set()


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Colour(str, enum.Enum):  # noqa: UP042 - the (str, Enum) mix-in is what is tested
    RED = "red"


def _credentials() -> dict[str, str]:
    user = os.environ.get(USER_ENV)
    if not user:
        return {}
    return {"user": user, "password": os.environ.get(PASSWORD_ENV, "")}


broker = DataflowNatsBroker(
    codec=codec,
    heartbeat_interval=0.2,
    heartbeat_timeout=1.0,
    large_value_threshold=int(os.environ.get(THRESHOLD_ENV) or 256 * 1024),
    **_credentials(),
)


@broker.task
@pipeline_task(output="echoed")
def echo(value):
    return value


@broker.task
@pipeline_task(output="unsendable")
def unsendable():
    return object()


@broker.task
def noop(*args):
    return None


@broker.task
async def index_or_unsendable(i, bad):
    """Its index, or at `bad` a value msgpack cannot carry (async, without a timeout nor type
    hints for taskiq to parse its arguments by: a worker steps it to its end in place, its
    result encoded with those of its frame)."""
    return object() if i == bad else i


@broker.task
async def index(i: int, delay: float = 0.0) -> int:
    """Returns its own index (bound as a constant input), after sleeping `delay`."""
    if delay:
        await asyncio.sleep(delay)
    return i


@broker.task
def where() -> dict[str, object]:
    return {"pid": os.getpid(), "pool": os.environ.get(POOL_ENV)}


@broker.task
@pipeline_task(pool="gpu")
def where_gpu() -> dict[str, object]:
    return {"pid": os.getpid(), "pool": os.environ.get(POOL_ENV)}


@broker.task
@pipeline_task(output="blob", inputs=["size"])
def make_blob(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)


@broker.task
def measure(blob: bytes) -> dict[str, int]:
    return {"len": len(blob), "sum": sum(blob[::4096])}


@broker.task
async def blob_now(size, seed):
    """`size` bytes at once (no suspension): many finish within one frame's flush. No type
    hints, so taskiq parses nothing and a worker steps it in place as it arrives."""
    return bytes([seed % 256]) * size


@broker.task
def die() -> None:
    """Kills the worker process that runs it (a task that crashes every worker it lands on)."""
    os._exit(17)
