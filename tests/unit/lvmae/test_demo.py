import pytest

from lvmae.demo import MARKER, Demo, DemoError, _heldout_spec, claim_folder, made_by_demo, plan_folder
from lvmae.foundation.schema import load_config

STORE = "an lvmae store with the demo's identity"


def test_a_foreign_folder_in_the_way_is_left_alone_and_reported(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "mine.txt").write_text("precious")
    with pytest.raises(DemoError, match="choose another --out") as e:
        claim_folder(store, current=False, what=STORE)
    assert str(store) in str(e.value) and STORE in str(e.value)
    assert (store / "mine.txt").read_text() == "precious"
    assert made_by_demo(tmp_path) == set() and not (tmp_path / MARKER).exists()


def test_a_file_in_the_way_is_reported(tmp_path):
    (tmp_path / "pretrain").write_text("not a folder")
    with pytest.raises(DemoError, match="pretrain is in the way"):
        plan_folder(tmp_path / "pretrain", current=False, what="a demo pretrain run")
    assert (tmp_path / "pretrain").read_text() == "not a folder"


def test_folders_the_demo_made_are_marked_and_only_they_are_replaced(tmp_path):
    store = tmp_path / "store"
    assert claim_folder(store, current=False, what=STORE) == "create"
    assert made_by_demo(tmp_path) == {"store"}
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    assert claim_folder(store, current=True, what=STORE) == "keep"
    assert (store / "zarr.json").exists()
    assert claim_folder(store, current=False, what=STORE) == "replace"
    assert not store.exists()  # deleted; the stage makes it anew
    assert made_by_demo(tmp_path) == {"store"}

    assert claim_folder(tmp_path / "pretrain", current=False, what="a run") == "create"
    assert made_by_demo(tmp_path) == {"store", "pretrain"}  # one marker names both


def test_an_empty_folder_is_used(tmp_path):
    (tmp_path / "store").mkdir()
    assert claim_folder(tmp_path / "store", current=False, what=STORE) == "create"
    assert made_by_demo(tmp_path) == {"store"}


def test_an_unmarked_folder_the_stage_would_resume_is_adopted_not_deleted(tmp_path):
    # What an earlier version of the demo left: a store with the demo's identity, no marker.
    store = tmp_path / "store"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    assert claim_folder(store, current=True, what=STORE) == "adopt"
    assert (store / "zarr.json").exists() and made_by_demo(tmp_path) == {"store"}
    # From now on it is the demo's: a later stale one is replaced.
    assert plan_folder(store, current=False, what=STORE) == "replace"


def test_the_held_out_corpus_needs_another_seed(tmp_path):
    cfg = load_config(None, ["toyworld.seed=3", "demo.heldout_seed=3"], use_default_file=False)
    with pytest.raises(DemoError, match="demo.heldout_seed 3 equals toyworld.seed"):
        _heldout_spec(Demo(cfg, tmp_path))
    cfg = load_config(None, ["demo.heldout_videos=12", "toyworld.size=32"], use_default_file=False)
    spec = _heldout_spec(Demo(cfg, tmp_path))
    assert (spec.videos, spec.seed, spec.size, spec.minutes) == (12, 1, 32, (1.0, 2.0))  # the world's frames


def test_the_commands_help_names_the_stages_the_demo_runs():
    from lvmae.commands.demo import STAGE_NAMES
    from lvmae.demo import STAGES

    assert STAGE_NAMES == ", ".join(stage.name for stage in STAGES)


def test_the_layout_is_what_the_stages_write_and_the_report_reads(tmp_path):
    from lvmae.demo import STAGES, DemoLayout

    layout = DemoLayout(tmp_path)
    outputs = {path for stage in STAGES for path in stage.outputs(layout)}
    assert outputs == {
        layout.search_examples,
        layout.search_sheet,
        layout.inspect,
        layout.timeline,
        layout.timeline_page,
        layout.probe,
    }
    assert all(path.parent == tmp_path for path in outputs)
    for path in outputs:
        path.write_text("{}")
    artifacts = layout.artifacts()
    assert (artifacts.inspect, artifacts.timeline, artifacts.probe) == (layout.inspect, layout.timeline, layout.probe)
    assert artifacts.store is None and artifacts.pretrain is None  # absent: None, and the report leaves them out
