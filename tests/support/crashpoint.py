"""Runs the `bridge` command paused inside its first commit of a batch, so a test can SIGKILL it there.

    python -m tests.support.crashpoint FLAG_FILE BRIDGE_ARGS...

Once StateStore.commit has opened its transaction and rewritten the pending notes without the batch's
(not yet committed), FLAG_FILE is created and the process sleeps: a kill from the test then provably lands during
the commit. Test support only; the bridge itself has no such hook.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

_PAUSE = 120.0  # bounded: the test kills the process long before


def main() -> int:
    flag, args = Path(sys.argv[1]), sys.argv[2:]
    from bridge.state import checkpoint

    write_notes = checkpoint.StateStore._write_notes  # inside commit's transaction; AttributeError if renamed

    def paused(self: Any, db: Any) -> None:
        write_notes(self, db)
        flag.write_text("inside the commit's transaction\n")
        time.sleep(_PAUSE)

    checkpoint.StateStore._write_notes = paused  # type: ignore[method-assign]
    from bridge.__main__ import main as bridge_main

    sys.argv = ["bridge", *args]
    return bridge_main()


if __name__ == "__main__":
    sys.exit(main())
