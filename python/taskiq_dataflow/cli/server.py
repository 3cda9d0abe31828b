"""`taskiq-dataflow server`: a local nats-server (JetStream on) for development."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..errors import CLIError


def server_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..cluster.server import serve_forever

    cluster = args.cluster
    if cluster is not None and ":" not in cluster:
        cluster = f"{args.host}:{cluster}"
    if args.routes and cluster is None:
        raise CLIError("--routes needs --cluster (where this server takes routes from the others)")
    return serve_forever(args.port, args.host, args.store_dir, cluster, args.routes, args.name)
