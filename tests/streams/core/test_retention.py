from greenlane.streams.core.retention import forget_stale
from greenlane.streams.domain.state import Overlay


def test_stale_entries_are_deleted_through_the_overlay_and_undated_ones_kept():
    store = {
        "old": {"filed_at": 1_000, "partition": 3},
        "new": {"filed_at": 9_000, "partition": 1},
        "no-time": {"partition": 2},  # kept: nothing says it is old
    }
    view = Overlay(store)
    assert forget_stale(view, "filed_at", 5_000) == 1
    assert view.changes() == {"old": None}
    assert "old" in store  # committed by the runtime, not by the sweep
    assert forget_stale(view, "filed_at", 10_000) == 1
    assert view.changes() == {"old": None, "new": None}
    assert set(view) == {"no-time"}
