"""`TaskiqFlowConfig`: taskiq-flow's settings of its web API, validated where they are given.

    config = TaskiqFlowConfig(
        auth_provider="api_key",
        api_keys={"my-key": {"role": "admin", "pipeline_whitelist": ["*"],
                             "permissions": ["read", "execute", "admin"]}},
    )
    TaskiqFlowConfig(security_enabled=False)      # development

The engine reads none of it: these are the settings of the run dashboard and its API (issue
12: authentication, authorization per pipeline, rate limits, metrics, the websocket), which will
take a `TaskiqFlowConfig`. Every field is checked now, so a typo or a bad value fails where it is
written, with pydantic's error naming the field: an unknown field is refused (taskiq-flow ignores
it), `auth_provider` is "api_key" or "jwt" (which then needs `jwt_secret`), an API key's
permissions are among "read", "execute", "admin", a rate is "<count>/<second|minute|hour|day>".

taskiq-flow's storage and cache settings (`storage_*`, `cache_*`) have no meaning here: runs are
kept by `RunStore(path)` given to `ExecutionEngine(store=)`, results reused through
`ExecutionEngine(cache=ResultCache(...))`; a value other than the default is refused, saying so.
Unlike taskiq-flow's, the settings are not read from `TASKIQ_FLOW_*` environment variables.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ApiKey", "TaskiqFlowConfig"]

Permission = Literal["read", "execute", "admin"]

_READ_ONLY: list[Permission] = ["read"]

_RATE = re.compile(r"^[1-9][0-9]*/(second|minute|hour|day)$")

# taskiq-flow's fields that nothing here will read, with their defaults and what to use instead
_NOT_HERE: dict[str, tuple[Any, str]] = {
    "storage_enabled": (True, "give ExecutionEngine(store=RunStore(path)) to keep runs"),
    "storage_type": ("auto", "runs are kept in SQLite by RunStore(path)"),
    "storage_redis_url": (None, "runs are kept in SQLite by RunStore(path)"),
    "storage_sqlite_url": (
        "sqlite+aiosqlite:///taskiq_flow.db",
        "give the file to RunStore(path)",
    ),
    "storage_sqlalchemy_url": (None, "runs are kept in SQLite by RunStore(path)"),
    "storage_ttl_seconds": (3600, "RunStore keeps runs until they are deleted"),
    "storage_async_mode": (True, "RunStore writes from the engine's loop"),
    "cache_enabled": (True, "give ExecutionEngine(cache=ResultCache(...)) to reuse results"),
    "cache_type": ("auto", "use ExecutionEngine(cache=ResultCache(...))"),
    "cache_redis_url": (None, "use ExecutionEngine(cache=ResultCache(...))"),
    "cache_default_ttl": (3600, "give a task pipeline_task(cache=True, max_ttl=...)"),
    "cache_lock_timeout": (10, "ResultCache needs no lock"),
}


class ApiKey(BaseModel):
    """One API key's grants: its `role` (what `pipeline_acls` lists), the pipelines it may
    reach (`pipeline_whitelist`, "*" for all) and its `permissions`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str = Field(min_length=1)
    pipeline_whitelist: list[str] = Field(default_factory=lambda: ["*"])
    permissions: list[Permission] = Field(default_factory=lambda: _READ_ONLY.copy())


class TaskiqFlowConfig(BaseModel):
    """taskiq-flow's configuration, with its fields and defaults, each validated (see the
    module docstring: the dashboard of issue 12 reads it; the engine does not)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # security
    security_enabled: bool = True
    auth_provider: Literal["api_key", "jwt"] = "api_key"
    api_keys: dict[str, ApiKey] = Field(default_factory=dict)
    jwt_secret: str | None = Field(default=None, repr=False)
    require_https: bool = True

    # authorization: pipeline -> permission -> the roles that have it
    pipeline_acls: dict[str, dict[Permission, list[str]]] = Field(default_factory=dict)

    # rate limiting
    rate_limit_enabled: bool = True
    rate_limit_default: str = "100/minute"

    # observability
    metrics_enabled: bool = True
    metrics_path: str = "/metrics"
    log_level: str = "INFO"

    # websocket
    websocket_require_auth: bool = True
    websocket_max_connections: int = Field(default=1000, ge=1)
    websocket_ssl_cert: str | None = None
    websocket_ssl_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_what_has_no_meaning(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                known = _NOT_HERE.get(name)
                if known is not None and value != known[0]:
                    raise ValueError(
                        f"{name}={value!r} is taskiq-flow's setting, which has no meaning in "
                        f"taskiq-dataflow: {known[1]}"
                    )
            return {k: v for k, v in data.items() if k not in _NOT_HERE}
        return data

    @field_validator("api_keys")
    @classmethod
    def _keys_not_blank(cls, keys: dict[str, ApiKey]) -> dict[str, ApiKey]:
        blank = [k for k in keys if not k.strip()]
        if blank:
            raise ValueError("an API key must not be empty or blank")
        return keys

    @field_validator("rate_limit_default")
    @classmethod
    def _rate(cls, rate: str) -> str:
        if not _RATE.match(rate):
            raise ValueError(
                f"{rate!r} is not a rate: write '<count>/<second|minute|hour|day>', e.g. "
                "'100/minute'"
            )
        return rate

    @field_validator("metrics_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"{path!r} is not a URL path: start it with '/', e.g. '/metrics'")
        return path

    @field_validator("log_level")
    @classmethod
    def _level(cls, level: str) -> str:
        name = level.upper()
        if name not in logging.getLevelNamesMapping():
            known = ", ".join(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
            raise ValueError(f"{level!r} is not a logging level: use one of {known}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> TaskiqFlowConfig:
        if self.security_enabled and self.auth_provider == "jwt" and not self.jwt_secret:
            raise ValueError(
                "auth_provider='jwt' needs jwt_secret (the key that signs the tokens), or use "
                "auth_provider='api_key' with api_keys"
            )
        if (self.websocket_ssl_cert is None) != (self.websocket_ssl_key is None):
            raise ValueError(
                "websocket_ssl_cert and websocket_ssl_key go together: give both (TLS on the "
                "websocket) or neither"
            )
        return self
