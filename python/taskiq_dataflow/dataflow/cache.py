"""DataCache: the key -> value store of the manual step-by-step loop."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

_MISSING: Any = object()


class DataCache:
    """Values by data key; `inject(keys)` gathers a task's arguments."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value of `key`; KeyError naming the key (and what is present) when absent."""
        try:
            return self._values[key]
        except KeyError:
            if default is not _MISSING:
                return default
            raise KeyError(self._missing_message([key])) from None

    def has(self, key: str) -> bool:
        return key in self._values

    def inject(self, keys: Iterable[str]) -> dict[str, Any]:
        """{key: value} for each key; KeyError naming every missing key."""
        keys = list(keys)
        missing = [k for k in keys if k not in self._values]
        if missing:
            raise KeyError(self._missing_message(missing))
        return {k: self._values[k] for k in keys}

    def _missing_message(self, missing: list[str]) -> str:
        present = sorted(self._values)
        shown = ", ".join(repr(k) for k in present[:20]) + (" ..." if len(present) > 20 else "")
        wanted = ", ".join(repr(k) for k in missing)
        return f"no value for {wanted} in the cache (has: {shown or 'nothing'})"

    def update(self, values: dict[str, Any]) -> None:
        self._values.update(values)

    def clear(self) -> None:
        self._values.clear()

    @property
    def size(self) -> int:
        """The number of keys held (`len(cache)`)."""
        return len(self._values)

    def keys(self) -> list[str]:
        """The keys held, in the order they were first set."""
        return list(self._values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)
