"""core/grouping.py: commits are held during a backfill, up to a count of records and an age, never when caught up."""

from bridge.core.grouping import CommitGroup


def test_records_are_held_until_the_count_is_reached_then_counting_starts_again():
    group = CommitGroup(max_records=2500, max_seconds=60)
    assert [group.hold(1000, caught_up=False, now=t) for t in (0, 1, 2)] == [True, True, False]
    assert group.hold(1000, caught_up=False, now=3) is True  # a new group
    assert not group.overdue(now=62) and group.overdue(now=63)


def test_a_caught_up_batch_is_written_at_once_with_everything_held():
    group = CommitGroup(max_records=10_000, max_seconds=60)
    assert group.hold(10, caught_up=False, now=0) is True
    assert group.hold(10, caught_up=True, now=0.1) is False
    assert not group.overdue(now=1000)  # nothing is held any more


def test_a_group_is_written_once_its_first_commit_is_old_enough():
    group = CommitGroup(max_records=10_000, max_seconds=1.0)
    assert group.hold(0, caught_up=False, now=10.0) is True  # a batch that only moves the seq is held too
    assert not group.overdue(now=10.9)
    assert group.hold(5, caught_up=False, now=10.9) is True
    assert group.overdue(now=11.0)
    assert group.hold(5, caught_up=False, now=11.0) is False


def test_written_by_the_caller_starts_a_new_group():
    group = CommitGroup(max_records=100, max_seconds=1.0)
    group.hold(99, caught_up=False, now=0)
    group.written()
    assert not group.overdue(now=5)
    assert group.hold(99, caught_up=False, now=5) is True  # the 99 before were written: 99 < 100


def test_no_records_means_no_grouping():
    group = CommitGroup(max_records=0, max_seconds=1.0)
    assert group.hold(0, caught_up=False, now=0) is False
    assert group.hold(1000, caught_up=False, now=0) is False
