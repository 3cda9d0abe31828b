"""taskiq-flow's path of `PipelineMiddleware` (`from taskiq_flow.middleware import ...`); it is
`pipeliner.PipelineMiddleware`, where its docstring says what it does here."""

from .pipeliner import PipelineMiddleware

__all__ = ["PipelineMiddleware"]
