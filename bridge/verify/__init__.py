"""Verify, repair and rebuild: compare the source, PANDA's rows and the bridge's record, and make them agree.

    compare.py   the kinds of difference and how one id is judged (pure)
    report.py    what a verify found, as JSON or text, and the numbers metrics export (pure)
    scratch.py   the temporary on-disk SQLite where both sides are streamed and diffed
    verify.py    reads the three sides, diffs them, reads the ids concerned again
    progress.py  a log line on an interval while a long read goes on
    repair.py    makes PANDA equal to the source for those differences and updates the record
    rebuild.py   rebuilds a lost record from PANDA's rows
    schedule.py  periodic verify (and repair) inside `bridge run`
"""
