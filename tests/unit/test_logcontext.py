"""Log lines logged for one of several pipelines carry its name, from every thread that works for it."""

from __future__ import annotations

import json
import logging
import threading

from bridge.ops import logcontext
from bridge.ops.logformat import configure_logging

logger = logging.getLogger("bridge.test")


def _lines(capsys) -> dict[str, dict]:
    return {line["message"]: line for line in map(json.loads, capsys.readouterr().err.splitlines())}


def test_a_pipelines_threads_and_theirs_carry_its_name(capsys):
    configure_logging("INFO", "json")

    def helper() -> None:
        logger.info("from a thread the pipeline made")

    def plain() -> None:
        logger.info("from a plain thread")

    def work() -> None:
        logger.info("from the pipeline's thread")
        logger.info("with a name of its own", extra={"pipeline": "other"})
        for made in (logcontext.thread(helper, name="helper"), threading.Thread(target=plain)):
            made.start()
            made.join(10)

    pipeline = logcontext.in_pipeline("alpha", work, name="pipeline-alpha")
    pipeline.start()
    pipeline.join(10)
    logger.info("outside any pipeline")
    lines = _lines(capsys)
    assert lines["from the pipeline's thread"]["pipeline"] == "alpha"
    assert lines["from a thread the pipeline made"]["pipeline"] == "alpha"
    assert lines["with a name of its own"]["pipeline"] == "other"
    assert "pipeline" not in lines["from a plain thread"]  # why the bridge makes its threads with thread()
    assert "pipeline" not in lines["outside any pipeline"]
