from greenlane.streams.domain.state import Overlay


def test_an_overlay_commits_its_writes_and_deletions_to_a_plain_table():
    table = {"a": 1, "b": 2}
    view = Overlay(table)
    view["a"] = 10
    view["c"] = 3
    del view["b"]
    assert table == {"a": 1, "b": 2}  # nothing reaches the table before the commit
    view.commit_to(table)
    assert table == {"a": 10, "c": 3}
