"""`bridge-panda-emulator`: run the PANDA emulator in the foreground until SIGINT or SIGTERM.

Everything is in memory; nothing is persisted. Drive it over HTTP under /_emulator/ (see control.py).
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from .server import DEFAULT_API_KEY, DEFAULT_EMAIL, PandaEmulator

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)

_GC_THRESHOLDS = (50_000, 50, 100)


def _user(value: str) -> tuple[str, str]:
    email, sep, key = value.partition(":")
    if not sep or not email or not key:
        raise argparse.ArgumentTypeError("expected EMAIL:KEY, got %r" % value)
    return email, key


def _dataset(value: str) -> tuple[str, list[str]]:
    slug, sep, columns = value.partition(":")
    if not sep or not slug or not columns:
        raise argparse.ArgumentTypeError("expected SLUG:col1,col2, got %r" % value)
    return slug, columns.split(",")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge-panda-emulator",
        description="A strict in-memory PANDA API emulator for tests and benchmarks. "
        "The user %s (API key %s) "
        "always exists." % (DEFAULT_EMAIL, DEFAULT_API_KEY),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on, 0 for any (default: %(default)s)"
    )
    parser.add_argument(
        "--user", type=_user, action="append", default=[], metavar="EMAIL:KEY", help="add a user"
    )
    parser.add_argument(
        "--dataset",
        type=_dataset,
        action="append",
        default=[],
        metavar="SLUG:COL1,COL2",
        help="create a dataset",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each write takes (default: 0)")
    parser.add_argument(
        "--strict-keys", action="store_true", help="refuse wrong API keys (PANDA accepts them)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, serve until SIGINT/SIGTERM, return 0."""
    args = build_parser().parse_args(argv)
    # It holds every stored row (hundreds of thousands of small objects in a benchmark) and creates no
    # reference cycles worth chasing: with the default thresholds the cyclic GC re-scans the stored rows
    # over and over, about a quarter of its CPU per bulk write (measured with py-spy).
    gc.set_threshold(*_GC_THRESHOLDS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emu = PandaEmulator(args.host, args.port, latency=args.latency, strict_keys=args.strict_keys)
    for email, key in args.user:
        emu.add_user(email, key)
    for slug, columns in args.dataset:
        emu.create_dataset(slug, columns)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emu.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        logger.info("stopping")
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
