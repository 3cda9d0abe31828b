"""Tasks with a taskiq middleware on their broker, for tests/e2e/test_middlewares_workers.py:
real `taskiq-dataflow worker middleware_tasks:broker` processes run them, and the middleware
appends each hook call, with the pid of the process that ran it, to the file named by
$E2E_MIDDLEWARE_LOG (one JSON list a line)."""

from __future__ import annotations

import json
import os
from typing import Any

from e2e_tasks import make_broker
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq_dataflow import pipeline_task

LOG_ENV = "E2E_MIDDLEWARE_LOG"


class FileRecorder(TaskiqMiddleware):
    def _note(self, *fields: Any) -> None:
        with open(os.environ[LOG_ENV], "a") as log:
            log.write(json.dumps([os.getpid(), *fields]) + "\n")

    def startup(self) -> None:
        self._note("startup")

    def shutdown(self) -> None:
        self._note("shutdown")

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        self._note("pre_execute", message.task_name, message.args, message.kwargs)
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        self._note("on_error", message.task_name, type(exception).__name__)

    async def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self._note("post_execute", message.task_name, result.is_err, result.return_value)

    def post_save(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self._note("post_save", message.task_name)


broker = make_broker().with_middlewares(FileRecorder())


@broker.task(task_name="mw:inc")
@pipeline_task(output="y")
async def inc(x: int) -> int:
    return x + 1


@broker.task(task_name="mw:halve")
@pipeline_task(output="z")
def halve(y: int) -> float:  # blocking: runs in a worker thread, inside the middleware
    return y / 2
