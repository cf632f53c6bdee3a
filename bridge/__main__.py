"""`python -m bridge` and the `bridge` console script: the stop handlers first, then the slow imports.

A supervisor may stop a bridge it has just started; until the pipeline runs, that exits 0 at once
(bridge/stopping.py), even while requests, sqlite3 and the rest are still being imported.
"""

import sys

from bridge import stopping


def main() -> int:
    """Install the stop handlers, then import and run the command line."""
    stopping.install()
    from bridge.cli import main as cli_main  # noqa: PLC0415 - deliberately after the handlers

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
