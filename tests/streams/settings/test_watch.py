"""A watched settings set: reloaded when its files change, the last good one kept."""

from greenlane.streams.settings import SETTINGS_DIR, ConfigError, load_settings
from greenlane.streams.settings.watch import Watched
from greenlane.streams.stages.lanes import load_lane_settings


def test_a_changed_set_is_reloaded_and_a_broken_one_refused(tmp_path):
    path = tmp_path / "lanes.yaml"
    path.write_text((SETTINGS_DIR / "lanes.yaml").read_text())
    events = []
    watched = Watched(
        "lanes",
        lambda: [path],
        lambda: load_lane_settings(path),
        check_seconds=0,
        on_reload=lambda name, loaded, error: events.append((name, loaded, error)),
    )
    assert watched.current.version == "2026.12.1"
    assert watched.refresh() is False and events == []  # nothing changed
    path.write_text(path.read_text().replace('version: "2026.12.1"', 'version: "2027.1"'))
    assert watched.refresh() is True and watched.current.version == "2027.1"
    assert events[-1][0] == "lanes" and events[-1][2] is None
    path.write_text(path.read_text().replace("inspect_ceiling: 0.03", "inspect_ceiling: 3"))
    assert watched.refresh() is False
    assert watched.current.version == "2027.1"  # the last good set stays
    _, loaded, error = events[-1]
    assert loaded is None and isinstance(error, ConfigError) and "inspect_ceiling" in str(error)


def test_a_folder_is_watched_file_by_file(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "a.yaml").write_text("1")
    loads = []
    watched = Watched("x", lambda: [folder], lambda: loads.append(1) or len(loads), 0)
    (folder / "b.yaml").write_text("2")
    assert watched.refresh() is True and watched.current == 2


def test_the_deployment_folder_overrides_only_what_it_holds(tmp_path):
    (tmp_path / "lanes.yaml").write_text("x")
    extra = tmp_path / "greenlane.toml"
    extra.write_text(f'[worker]\nsettings_dir = "{tmp_path}"\n')
    worker = load_settings(extra, env={}).worker
    assert worker.settings_file("lanes.yaml") == tmp_path / "lanes.yaml"
    assert worker.settings_file("quality.toml") == SETTINGS_DIR / "quality.toml"
