"""The worker's table upkeep (the agents themselves run in tests/integration)."""

from greenlane.streams.runtime.app import stale_entries


def test_stale_entries_are_deleted_in_the_partition_that_holds_them():
    store = {
        "old": {"filed_at": 1_000, "partition": 3},
        "new": {"filed_at": 9_000, "partition": 1},
        "no-time": {"partition": 2},  # kept: nothing says it is old
        "legacy": {"filed_at": 1_000},  # kept: no known changelog partition
    }
    assert stale_entries(store, "filed_at", 5_000) == [("old", None, 3)]
    assert stale_entries(store, "filed_at", 10_000) == [("old", None, 3), ("new", None, 1)]
