import numpy as np

from lvmae.extract.plan import manifest_extras
from lvmae.extract.work import ShardAssembler, VideoJob, segment_batches
from lvmae.foundation.schema import SegmentConfig


def encoded(job, segs, *, end=None):
    """A batch as the encoder stage returns it: segment rows, or one end row."""
    n = 1 if end else len(segs)
    batch = {
        "video_id": np.array([job.video_id] * n, object),
        "shard_id": np.array([job.shard_id] * n, object),
        "end": np.full(n, bool(end)),
        "status": np.array([end["status"] if end else ""] * n, object),
        "error": np.array([end.get("error", "") if end else ""] * n, object),
        "error_kind": np.array([end.get("error_kind", "") if end else ""] * n, object),
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


def test_input_columns_named_like_manifest_columns_are_renamed():
    assert manifest_extras({"label": "a", "duration": 3.0, "fps": 8}) == {
        "label": "a",
        "input_duration": 3.0,
        "input_fps": 8,
    }


def tiny_store(tmp_path):
    from lvmae.store import Store, StoreIdentity

    identity = StoreIdentity(
        encoder={"name": "e", "weights_sha256": "0"},
        tokenizer={"name": "t", "weights_sha256": "1"},
        segment={"seconds": 2.0},
    )
    return Store.create(str(tmp_path / "s"), identity)


def test_assembler_dedupes_retried_rows_and_waits_for_every_video(tmp_path):
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
    store = tiny_store(tmp_path)
    assert asm.write(store, "000000") == []  # nothing refused
    assert store.summary().videos_ok == 1 and store.summary().videos_failed == 1 and store.summary().segments == 3
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


def test_a_video_with_bad_features_is_a_failed_row_and_the_rest_of_its_shard_commits(tmp_path):
    good, bad = VideoJob("good", "/good.mp4", "s1"), VideoJob("bad", "/bad.mp4", "s1")
    asm = ShardAssembler({"s1": [(good, {}), (bad, {})]})
    asm.add(encoded(good, [0, 1]))
    asm.add(encoded(good, [], end={"status": "ok", "n_segments": 2, "duration": 4.0}))
    nan = encoded(bad, [0])
    nan["emb"][0, 1] = np.nan  # a feature the store refuses
    asm.add(nan)
    asm.add(encoded(bad, [], end={"status": "ok", "n_segments": 1, "duration": 2.0}))
    store = tiny_store(tmp_path)
    refused = asm.write(store, "s1")
    assert [r["video_id"] for r in refused] == ["bad"] and "not finite" in refused[0]["error"]
    rows = {r["video_id"]: r for r in store.videos().to_pylist()}
    assert rows["good"]["status"] == "ok" and store.sequence("good").emb.shape == (2, 4)
    assert rows["bad"]["status"] == "failed" and rows["bad"]["error_kind"] == "permanent"
    assert "not finite" in rows["bad"]["error"] and store.verify().ok


def test_failure_kinds():
    from lvmae.extract.decode import VideoError
    from lvmae.extract.work import failure_kind

    assert failure_kind(VideoError("x: corrupt")) == "permanent"
    assert failure_kind(VideoError("x: timed out", transient=True)) == "transient"
    assert failure_kind(FileNotFoundError("x")) == failure_kind(MemoryError()) == "transient"
    assert failure_kind(ValueError("x")) == "permanent"


def test_a_decode_task_reserves_the_largest_frames_it_may_decode():
    from lvmae.extract.runner import decode_chunk_bytes, decode_task_memory, decoder_frame_bytes
    from lvmae.foundation.schema import ExtractConfig

    small, large = ExtractConfig(max_pixels=640 * 360), ExtractConfig(max_pixels=3840 * 2160, decode_num_cpus=2)
    spec = SegmentConfig()
    assert decoder_frame_bytes(small) == 4 * 640 * 360 * 3 // 2  # one thread plus three held frames, 4:2:0
    assert decode_task_memory(large, spec, 64) - decode_task_memory(small, spec, 64) == (
        decoder_frame_bytes(large) - decoder_frame_bytes(small)
    )
    assert decode_task_memory(small, spec, 64) == 2 * decode_chunk_bytes(small, spec, 64) + decoder_frame_bytes(
        small
    ) + (192 << 20)


def test_the_report_tallies_where_rows_were_decoded_and_encoded():
    from lvmae.extract.runner import ExtractReport

    report = ExtractReport()
    batch = {
        "end": np.array([False, False, True, False, True]),
        "decode_node": np.array(["a", "a", "a", "b", "b"], dtype=object),
        "encode_node": np.array(["b", "a", "b", "b", "a"], dtype=object),
    }
    report.count_work(batch)
    report.count_work({"end": np.array([True]), "decode_node": np.array(["c"], dtype=object)})
    report.count_work({"end": np.array([False, True])})  # the local runner's rows name no node
    assert report.nodes == {
        "a": {"videos": 1, "segments": 1},
        "b": {"videos": 1, "segments": 2},
        "c": {"videos": 1, "segments": 0},
    }
    text = report.summary("store", "ray").render()
    assert "Ray nodes (3)" in text and "b: 1 videos decoded, 2 segments encoded" in text
    assert "Ray nodes" not in ExtractReport().summary("store", "local").render()
