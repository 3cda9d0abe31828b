"""`python -m taskiq_dataflow` is the `taskiq-dataflow` command."""

import sys

from .cli import main

sys.exit(main())
