"""`taskiq-dataflow run TARGET`: run a pipeline here, its outputs on stdout."""

from __future__ import annotations

import argparse
import asyncio
from typing import TextIO

from .runner import run_pipeline


def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return asyncio.run(run_pipeline(args, out, err))
