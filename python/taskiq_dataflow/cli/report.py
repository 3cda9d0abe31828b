"""`taskiq-dataflow report RUN_ID --store PATH -o FILE`: a recorded run's report, one
self-contained HTML file (the dashboard's views, no network needed)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TextIO

from ..errors import CLIError, StoreError
from .output import EXIT_FAILED, EXIT_USAGE, PROG
from .targets import as_pipeline, full_dag, load_target


def report_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..dashboard import write_report
    from ..store import RunStore

    if not os.path.isfile(args.store):
        raise CLIError(
            f"no run store at {args.store!r} (give the --store PATH of the run)", EXIT_USAGE
        )
    dag = None
    if args.dag is not None:
        dag = full_dag(as_pipeline(asyncio.run(load_target(args.dag))))
    store = RunStore(args.store)
    try:
        written = write_report(args.output, store=store, run_id=args.run_id, dag=dag)
    except StoreError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from exc
    except OSError as exc:
        raise CLIError(str(exc), EXIT_FAILED) from exc
    finally:
        store.close()
    err.write(f"{PROG}: report of run {args.run_id} written to {written}\n")
    return 0
