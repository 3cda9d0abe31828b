"""`taskiq-dataflow worker BROKER`: worker processes serving a pool of the NATS cluster."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO


def worker_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..cluster.serve import serve

    sys.path.insert(0, os.getcwd())
    return serve(
        args.target, args.workers, args.pool, args.concurrency, args.max_restarts,
        args.metrics, args.metrics_push, args.log_level, args.log_format, args.server,
    )  # fmt: skip
