"""`python -m memkd ...` is the `memkd` command."""

import sys

from memkd.cli import main

sys.exit(main())
