"""`taskiq-dataflow server`: a local nats-server (JetStream on) for development."""

from __future__ import annotations

import argparse
from typing import TextIO


def server_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..cluster.server import serve_forever

    return serve_forever(args.port, args.host, args.store_dir)
