"""The run store as the command line reads it: which file (`--store`, `$DATAFLOW_STORE`, the
default), opened only when it exists, a run named by a unique prefix of its id, and stored
values shown decoded (JSON when they are JSON, a readable repr otherwise).
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from ..errors import CLIError
from ..store import RunStore
from .args import DEFAULT_STORE, STORE_ENV
from .output import EXIT_USAGE, PROG

TEXT_CHARS = 300  # a value in a table or a `show` line
JSON_CHARS = 10_000  # the repr of a value that is not JSON, in --json output
CANDIDATES = 10  # run ids listed when a prefix is ambiguous


def store_path(option: str | None) -> str:
    """`--store PATH`, else `$DATAFLOW_STORE`, else ./dataflow-runs.db."""
    return option or os.environ.get(STORE_ENV) or DEFAULT_STORE


def open_store(option: str | None) -> RunStore:
    """The store to read; a missing file is an error (reading must not create an empty one)."""
    path = store_path(option)
    where = "--store" if option else f"${STORE_ENV}" if os.environ.get(STORE_ENV) else "default"
    if not os.path.exists(path):
        raise CLIError(
            f"no run store at {path!r} ({where}); record runs with `{PROG} run TARGET --store "
            f"{path}`, or name another store with --store PATH or ${STORE_ENV}"
        )
    if os.path.isdir(path):
        raise CLIError(f"the run store {path!r} ({where}) is a directory, not a SQLite file")
    try:
        return RunStore(path)
    except sqlite3.DatabaseError as exc:
        raise CLIError(f"cannot read the run store {path!r} ({where}): {exc}") from exc


def resolve_run(store: RunStore, text: str) -> str:
    """The one run id `text` is, or starts: an unknown or ambiguous one is an error listing
    the candidates (exit 2)."""
    if not text:
        raise CLIError("RUN is empty: give a run id or a prefix of one (`runs ls` lists them)")
    found = store.run_ids(text, CANDIDATES + 1)
    if text in found:
        return text
    if len(found) == 1:
        return found[0]
    if not found:
        recent = [run["run_id"] for run in store.recent_runs(limit=5)]
        hint = f"; the newest: {', '.join(recent)}" if recent else "; the store holds no runs"
        raise CLIError(f"no run {text!r} in {store.path}{hint}", EXIT_USAGE)
    listed = ", ".join(found[:CANDIDATES]) + (" and more" if len(found) > CANDIDATES else "")
    raise CLIError(
        f"run {text!r} is ambiguous in {store.path}: it starts {listed}; give more characters",
        EXIT_USAGE,
    )


class Stored:
    """A value from the store: decoded, or why it is not."""

    def __init__(self, store: RunStore, blob: bytes | None) -> None:
        self.blob = blob
        self.value: Any = None
        self.ok, self.value = (False, None) if blob is None else store.decode(blob)

    def problem(self) -> str:
        if self.blob is None:
            return "<not stored>"
        return (
            f"<{len(self.blob)} stored bytes that do not decode (a codec registered when the "
            "value was written is missing?)>"
        )


def _json_text(value: Any) -> str | None:
    """`value` as JSON when it is JSON exactly (a tuple or a set is not: its repr says so)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    try:
        same = json.loads(text) == value
    except RecursionError:
        return None
    return text if same else None


def _cut(text: str, limit: int, note: str) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars{note})"


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a repr that raises, or recursion too deep
        return f"<{type(value).__qualname__} whose repr raised {type(exc).__name__}>"


def value_text(value: Any, limit: int = TEXT_CHARS) -> str:
    """One line for a value: its JSON, else its repr, cut at `limit` characters."""
    text = _json_text(value)
    if text is None:
        text = _repr(value)
    return _cut(text.replace("\n", "\\n"), limit, "; --json shows more")


def value_json(value: Any) -> Any:
    """A value for --json output: itself when it is JSON, else its repr (a string)."""
    if _json_text(value) is not None:
        return value
    return _cut(_repr(value), JSON_CHARS, "")


def mapping_text(stored: Stored) -> dict[str, str] | str:
    """A stored mapping (inputs, a task's outputs) key by key, or the one line why not."""
    if not stored.ok:
        return stored.problem()
    if not isinstance(stored.value, dict):
        return value_text(stored.value)
    return {str(key): value_text(value) for key, value in stored.value.items()}


def mapping_json(stored: Stored) -> dict[str, Any] | str:
    if not stored.ok:
        return stored.problem()
    if not isinstance(stored.value, dict):
        return value_json(stored.value)  # type: ignore[no-any-return]
    return {str(key): value_json(value) for key, value in stored.value.items()}
