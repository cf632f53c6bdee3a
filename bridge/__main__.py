"""`python -m bridge` runs the `bridge` command."""

import sys

from .cli import main

sys.exit(main())
