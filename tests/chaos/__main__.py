"""`python -m tests.chaos`: run the chaos drill (see tests/chaos/harness.py)."""

import sys

from tests.chaos.harness import main

sys.exit(main())
