import numpy as np

from extract.inputs import InputVideo
from extract.runner import manifest_extras, plan_shards
from extract.work import ShardAssembler, VideoJob, segment_batches
from foundation.schema import SegmentConfig


def encoded(job, segs, *, end=None):
    """A batch as the encoder stage returns it: segment rows, or one end row."""
    n = 1 if end else len(segs)
    batch = {
        "video_id": np.array([job.video_id] * n, object),
        "shard_id": np.array([job.shard_id] * n, object),
        "end": np.full(n, bool(end)),
        "status": np.array([end["status"] if end else ""] * n, object),
        "error": np.array([end.get("error", "") if end else ""] * n, object),
        "duration": np.full(n, end["duration"] if end else 0.0),
        "fps": np.full(n, 8.0),
        "n_segments": np.full(n, end["n_segments"] if end else 0),
        "seg": np.array([-1] if end else segs),
        "span": np.zeros((n, 2), np.float32),
        "emb": np.ones((n, 4), np.float16) * (np.array([-1] if end else segs)[:, None]),
        "codes": np.zeros((n, 1, 2, 2), np.int16),
        "scores": np.zeros((n, 1, 2, 2), np.float16),
        "importance": np.zeros(n, np.float32),
    }
    for i, s in enumerate([] if end else segs):
        batch["span"][i] = [2 * s, 2 * s + 2]
    return batch


def test_plan_shards_is_deterministic_groups_in_input_order():
    videos = [InputVideo(f"/v/{i}.mp4", f"id{i}") for i in range(5)]
    shards = plan_shards(videos, 2)
    assert list(shards) == ["000000", "000001", "000002"]
    assert [v.video_id for v in shards["000002"]] == ["id4"]


def test_input_columns_named_like_manifest_columns_are_renamed():
    assert manifest_extras({"label": "a", "duration": 3.0, "fps": 8}) == {
        "label": "a",
        "input_duration": 3.0,
        "input_fps": 8,
    }


def test_assembler_dedupes_retried_rows_and_waits_for_every_video(tmp_path):
    from store import Store, StoreIdentity

    a, b = VideoJob("a", "/a.mp4", "000000"), VideoJob("b", "/b.mp4", "000000")
    asm = ShardAssembler({"000000": [(a, {"label": "x"}), (b, {})]})
    assert asm.add(encoded(a, [1, 0])) == []
    assert asm.add(encoded(a, [1])) == []  # a retry repeats segment 1
    done = asm.add(encoded(a, [], end={"status": "ok", "n_segments": 3, "duration": 5.0}))
    assert done == [] and asm.complete_shards() == []  # segment 2 still missing
    assert [r["video_id"] for r in asm.add(encoded(a, [2]))] == ["a"]
    asm.add(encoded(b, [0]))
    failed = asm.add(
        encoded(b, [], end={"status": "failed", "error": "/b.mp4: broken", "n_segments": 0, "duration": 0.0})
    )
    assert failed[0]["status"] == "failed" and asm.complete_shards() == ["000000"]
    store = Store.create(
        str(tmp_path / "s"),
        StoreIdentity(
            encoder={"name": "e", "weights_sha256": "0"},
            tokenizer={"name": "t", "weights_sha256": "1"},
            segment={"seconds": 2.0},
        ),
    )
    assert asm.write(store, "000000") == (1, 1, 3)
    seq = store.sequence("a")
    assert seq.emb[:, 0].tolist() == [0, 1, 2] and seq.span[:, 0].tolist() == [0, 2, 4]
    rows = {r["video_id"]: r for r in store.videos().to_pylist()}
    assert rows["a"]["label"] == "x" and rows["b"]["status"] == "failed" and rows["b"]["error"] == "/b.mp4: broken"
    assert asm.add(encoded(a, [0])) == []  # late duplicates after the write


def test_segment_batches_turn_a_bad_file_into_one_failed_row(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    batches = list(segment_batches(VideoJob("x", str(bad), "000000"), SegmentConfig(), 64))
    assert len(batches) == 1 and batches[0]["end"].tolist() == [True]
    assert batches[0]["status"][0] == "failed" and "bad.mp4" in batches[0]["error"][0]
    assert batches[0]["clip"].shape == (1, 8, 64, 64, 3)
