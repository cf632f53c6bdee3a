"""`--shard K/N`: which pipelines this process runs, by a stable hash of each pipeline's name (pure).

The hash is documented so that any tool can tell where a pipeline runs: the first 8 bytes of the SHA-256
of the name's UTF-8 bytes, read as a big-endian unsigned integer, modulo N. Shard K (0 <= K < N, a
StatefulSet's ordinal) runs the pipelines whose hash is K. It depends on the name and N only, never on
the order of the file or on the process, so every replica agrees without talking to the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.errors import ConfigError

__all__ = ["Shard", "parse_shard", "shard_of"]


def shard_of(name: str, count: int) -> int:
    """The shard (0..count-1) of the pipeline called `name`."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """This process's share: shard `index` of `count`."""

    index: int = 0
    count: int = 1

    def owns(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def pick(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if self.owns(name)]


def parse_shard(text: str) -> Shard:
    """`K/N` with 0 <= K < N; raises ConfigError."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not found or not 0 <= int(found.group(1)) < int(found.group(2)):
        raise ConfigError(f"--shard wants K/N with 0 <= K < N (K is the replica's ordinal), got {text!r}")
    return Shard(int(found.group(1)), int(found.group(2)))
