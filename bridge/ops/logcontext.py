"""Which pipeline a log line is about, in every thread that works for it.

With several pipelines in one process, each runs in its own thread and starts more (reader, writer,
progress, marker watch, periodic verify). The supervisor sets `PIPELINE` in the pipeline's thread; threads
made with `thread()` run in a copy of their creator's context, so they see it too (a plain
`threading.Thread` starts with an empty context); and `PipelineField`, on the log handler, puts it on
every record that has no `pipeline` of its own, so JSON lines carry it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["PIPELINE", "PipelineField", "thread", "in_pipeline"]

PIPELINE: contextvars.ContextVar[str | None] = contextvars.ContextVar("bridge_pipeline", default=None)
"""The name of the pipeline the current thread works for; None outside any (a single-pipeline process)."""


def thread(target: Callable[..., Any], *, name: str, args: tuple[Any, ...] = (), daemon: bool = True,
           ) -> threading.Thread:
    """A thread (not started) that runs `target(*args)` in a copy of the caller's context."""
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(target, *args), name=name, daemon=daemon)


def in_pipeline(pipeline: str, target: Callable[..., Any], *, name: str, args: tuple[Any, ...] = (),
                ) -> threading.Thread:
    """A daemon thread (not started) that runs `target(*args)` for `pipeline`: its log lines, and those of
    the threads it makes with `thread()`, name that pipeline."""
    context = contextvars.copy_context()
    context.run(PIPELINE.set, pipeline)
    return threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)


class PipelineField(logging.Filter):
    """Sets `pipeline` on records logged for a pipeline (see PIPELINE), unless the record has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "pipeline"):
            pipeline = PIPELINE.get()
            if pipeline is not None:
                record.pipeline = pipeline
        return True
