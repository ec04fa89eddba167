import pyarrow as pa
import pytest

from lvmae.extract.inputs import InputVideo
from lvmae.extract.plan import PlanError, plan_extraction, shard_id_for
from lvmae.store.manifest import COLUMNS


def inputs(*names):
    return [InputVideo(f"/v/{n}.mp4", n, {"label": n.upper()}) for n in names]


def committed(plan, failed=(), kinds=None):
    """The manifest rows a store would hold after committing `plan` (videos in `failed` failed)."""
    rows = []
    for sid, videos in plan.shards.items():
        for i, v in enumerate(videos):
            bad = v.video_id in failed
            rows.append(
                {
                    "video_id": v.video_id,
                    "uri": v.uri,
                    "duration": None if bad else 4.0,
                    "fps": 8.0,
                    "n_segments": 0 if bad else 2,
                    "shard_id": sid,
                    "row_start": 2 * i,
                    "status": "failed" if bad else "ok",
                    "error": "boom" if bad else None,
                    "error_kind": (kinds or {}).get(v.video_id, "permanent") if bad else None,
                    **v.extra,
                }
            )
    return pa.Table.from_pylist(rows) if rows else COLUMNS.empty_table()


def test_shard_ids_come_from_the_videos_not_their_places():
    assert shard_id_for(["a", "b"]) == shard_id_for(["b", "a"]) != shard_id_for(["a", "c"])
    first = plan_extraction(inputs("b", "c", "d"), COLUMNS.empty_table(), 2)
    assert [[v.video_id for v in vs] for vs in first.shards.values()] == [["b", "c"], ["d"]]
    assert list(first.shards) == [shard_id_for(["b", "c"]), shard_id_for(["d"])]
    assert first.shards[shard_id_for(["d"])][0].extra == {"label": "D"}


def test_a_video_that_sorts_first_is_the_only_one_planned_on_a_rerun():
    first = plan_extraction(inputs("b", "c", "d"), COLUMNS.empty_table(), 2)
    again = plan_extraction(inputs("a", "b", "c", "d"), committed(first), 2)
    assert [v.video_id for vs in again.shards.values() for v in vs] == ["a"]
    assert again.kept == set(first.shards) and not again.replace


def test_a_second_list_into_the_same_store_is_planned_whole():
    first = plan_extraction(inputs("a", "b"), COLUMNS.empty_table(), 2)
    second = plan_extraction(inputs("x", "y", "z"), committed(first), 2)
    assert sorted(v.video_id for vs in second.shards.values() for v in vs) == ["x", "y", "z"]
    assert not second.kept  # the first list's shards are none of this job's business


def test_no_resume_re_extracts_the_committed_shards_whole_under_their_ids():
    first = plan_extraction(inputs("a", "b", "c"), COLUMNS.empty_table(), 2)
    redo = plan_extraction(inputs("c", "d"), committed(first), 2, resume=False)
    assert redo.replace == {shard_id_for(["c"])}
    assert [v.video_id for v in redo.shards[shard_id_for(["c"])]] == ["c"]
    assert [v.video_id for v in redo.shards[shard_id_for(["d"])]] == ["d"]


def test_retry_re_extracts_the_shards_holding_retryable_failures():
    first = plan_extraction(inputs("a", "b", "c"), COLUMNS.empty_table(), 2)
    rows = committed(first, failed={"a", "c"}, kinds={"a": "transient", "c": "permanent"})
    kept = plan_extraction(inputs("a", "b", "c"), rows, 2)
    assert not kept.shards and {f["video_id"] for f in kept.earlier_failures} == {"a", "c"}
    transient = plan_extraction(inputs("a", "b", "c"), rows, 2, retry="transient")
    assert transient.replace == {shard_id_for(["a", "b"])}  # the whole shard, b included
    assert [v.video_id for v in transient.shards[shard_id_for(["a", "b"])]] == ["a", "b"]
    assert [f["video_id"] for f in transient.earlier_failures] == ["c"]
    everything = plan_extraction(inputs("a", "b", "c"), rows, 2, retry="all")
    assert everything.replace == {shard_id_for(["a", "b"]), shard_id_for(["c"])}


def test_a_committed_shard_that_holds_other_videos_under_a_planned_id_is_drift():
    rows = committed(plan_extraction(inputs("x"), COLUMNS.empty_table(), 2))
    rows = rows.set_column(rows.column_names.index("shard_id"), "shard_id", pa.array([shard_id_for(["a"])]))
    with pytest.raises(PlanError, match=f"shard {shard_id_for(['a'])} is committed with videos"):
        plan_extraction(inputs("a"), rows, 2)
