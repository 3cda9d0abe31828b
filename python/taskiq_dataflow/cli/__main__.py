"""`python -m taskiq_dataflow.cli` is the `taskiq-dataflow` command too."""

import sys

from . import main

sys.exit(main())
