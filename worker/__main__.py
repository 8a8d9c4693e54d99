"""`python -m worker` runs the same CLI as the `regworker` console script."""

import sys

from worker.cli import main

sys.exit(main())
