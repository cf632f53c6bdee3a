"""Issue 16, defect 10: a SIGTERM during start-up exits 0 at once, never by the signal (exit 143).

A supervisor that stops a bridge it has just restarted must see the documented clean exit, whether the
signal lands while Python imports the bridge or while the start-up checks wait for a server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from bridge.emulator import PandaEmulator
from tests.support.pipeline import ROOT, Pipeline, stop, wait_until

# Run as the console script does: load the `bridge` entry point, then call it. An audit hook notes, for each
# slow module, whether SIGTERM was already handled when it was first imported.
_PROBE = textwrap.dedent("""
    import json, signal, sys
    from importlib.metadata import entry_points
    slow = ("requests", "urllib3", "sqlite3", "orjson", "bridge.cli", "bridge.run.pipeline")
    handled = {}
    def hook(event, args):
        if event == "import" and args[0] in slow and args[0] not in handled:
            handled[args[0]] = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
    sys.addaudithook(hook)
    (entry,) = entry_points(group="console_scripts", name="bridge")
    main = entry.load()
    sys.argv = ["bridge", "--version"]
    try:
        main()
    except SystemExit:
        pass
    print(json.dumps(handled))
""")


def test_the_stop_handlers_are_in_place_before_the_slow_imports() -> None:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    handled = json.loads(result.stdout.splitlines()[-1])  # after `bridge --version`'s own line
    assert "requests" in handled and "bridge.cli" in handled  # the probe saw the slow imports
    unhandled = sorted(name for name, ok in handled.items() if not ok)
    assert unhandled == [], f"imported while SIGTERM would kill the process: {unhandled}"


def test_a_sigterm_during_the_startup_checks_exits_0_at_once(pipeline: Pipeline, panda: PandaEmulator) -> None:
    # PANDA answers its first start-up request only after a minute, and the bridge would wait for it.
    pipeline.extra = {"panda": {"timeout": 120.0}}
    pipeline.write_config()
    panda.slow_replies(90.0, count=1)
    process = pipeline.start()
    wait_until(lambda: bool(panda.requests), "the bridge's first start-up request reached PANDA", process=process)
    code, err = stop(process, signal.SIGTERM, timeout=20)
    assert code == 0, err[-3000:]
    assert "received during start-up" in err
    assert pipeline.rows() == {}
