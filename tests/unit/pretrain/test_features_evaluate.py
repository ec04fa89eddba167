import numpy as np
import pyarrow.compute as pc
import pytest
import torch
import torch.nn.functional as F

from lvmae.cli import main as lvmae_main
from lvmae.evaluation.reconstruction import nearest_visible, reconstruction_mse, window_key
from lvmae.foundation.schema import load_config
from lvmae.pretrain.checkpoint import MODEL, load_pretrained
from lvmae.pretrain.features import chunk_bounds, embed_sequences, sequence_features
from lvmae.pretrain.masking import decoder_adaptive, random_mask
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.pretrain.train import train
from lvmae.store import Store


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A store (one failed video included) and a tiny model trained on it briefly."""
    tmp = tmp_path_factory.mktemp("enc")
    uri = str(tmp / "store")
    store = write_procedure_store(uri, videos=6, segments=(30, 150))
    with store.shard_writer("000009") as w:
        w.add_failed(video_id="broken", uri="x://broken", error="no video stream", extra={"procedure": 1})
    cfg = load_config(
        None,
        [
            "pretrain.preset=tiny",
            "pretrain.steps=20",
            "pretrain.max_segments=64",
            "pretrain.min_segments=8",
            "pretrain.val_fraction=0.34",
            "pretrain.decoder_mask=adaptive",  # the test below recomputes the adaptive selection
        ],
        use_default_file=False,
    ).pretrain
    train(cfg, store_uri=uri, out_dir=tmp / "out")
    return uri, tmp / "out" / MODEL


def test_chunk_bounds_are_even_and_cover():
    assert chunk_bounds(10, 4) == [(0, 3), (3, 7), (7, 10)]
    assert chunk_bounds(8, 8) == [(0, 8)] and chunk_bounds(1, 8) == [(0, 1)]
    for T, c in [(1000, 64), (65, 64), (4097, 4096)]:
        bounds = chunk_bounds(T, c)
        assert bounds[0][0] == 0 and bounds[-1][1] == T
        assert all(b - a <= c and b - a >= c // 2 for a, b in bounds)
        assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:]))


def test_encode_is_the_encoder_over_each_chunk(run):
    _, model_path = run
    pre = load_pretrained(model_path)
    emb = torch.randn(100, 32)
    full = sequence_features(pre.model, emb, chunk=1000)
    assert full.shape == (100, pre.model.cfg.width) and full.dtype == np.float32
    ones = torch.ones(1, 100, dtype=torch.bool)
    assert np.allclose(full, pre.model.features(emb[None], ones)[0].numpy(), atol=1e-5)
    chunked = sequence_features(pre.model, emb, chunk=40)  # chunks [0, 33), [33, 67), [67, 100)
    part = pre.model.features(emb[None, 33:67], ones[:, :34])[0].numpy()
    assert np.allclose(chunked[33:67], part, atol=1e-5)
    assert pre.max_segments == 64 and len(pre.sha256) == 64


def test_embed_sequences_writes_a_store_with_the_same_videos(run, tmp_path):
    uri, model_path = run
    pre = load_pretrained(model_path)
    out_uri = str(tmp_path / "lvmae-store")
    counts = embed_sequences(Store.open(uri), pre, out_uri, progress=False)
    assert counts["shards_written"] == 2 and counts["videos"] == 6 and counts["failed"] == 1
    src, out = Store.open(uri), Store.open(out_uri)
    assert out.identity.encoder["name"] == "lvmae:model.pt"
    assert out.identity.encoder["weights_sha256"] == pre.sha256
    assert out.identity.segment == src.identity.segment and out.identity.tokenizer is None
    a = src.videos().sort_by("video_id").to_pydict()
    b = out.videos().sort_by("video_id").to_pydict()
    for column in ("video_id", "shard_id", "status", "n_segments", "procedure", "error", "duration"):
        assert a[column] == b[column]
    seq_in, seq_out = src.sequence("video0003"), out.sequence("video0003")
    assert seq_out.emb.shape == (seq_in.emb.shape[0], pre.model.cfg.width)
    assert np.array_equal(seq_in.span, seq_out.span) and np.array_equal(seq_in.importance, seq_out.importance)
    expected = sequence_features(pre.model, seq_in.emb, chunk=pre.max_segments).astype(np.float16)
    assert np.allclose(seq_out.emb, expected, atol=1e-3)
    assert out.verify().ok
    again = embed_sequences(Store.open(uri), pre, out_uri, progress=False)
    assert again["shards_written"] == 0 and again["shards_skipped"] == 2


def test_nearest_visible_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    visible = torch.rand(5, 40, generator=g) < 0.3
    visible[:, 7] = True
    got = nearest_visible(visible)
    for b in range(5):
        vis = visible[b].nonzero().flatten().tolist()
        for t in range(40):
            best = min(vis, key=lambda v: (abs(v - t), v))  # nearest, earlier on a tie
            assert got[b, t] == best
    assert nearest_visible(torch.tensor([[False, True, False, False, True]])).tolist() == [[1, 1, 1, 4, 4]]


def test_reconstruction_mse_scores_both_predictions_on_the_same_masks(run):
    uri, model_path = run
    pre = load_pretrained(model_path)
    store = Store.open(uri)
    result = reconstruction_mse(pre, store, split="all", ratio=0.5, decoder="all")
    assert result.videos == 6 and result.split == "all" and result.decoder == "all"
    assert 0 < result.model_mse < 10 and 0 < result.copy_nearest_mse < 1
    # The copy baseline, recomputed by hand for the whole store.
    from lvmae.pretrain.data import EVAL_STREAM, ok_videos, read_batch, step_seeds, tile_windows

    def window_masks(window):
        """Each window's masks come from its own generator, keyed by (seed, video, start)."""
        emb = read_batch(store, [window]).emb
        generator = step_seeds(0, EVAL_STREAM, window_key(window.video_id), window.start)[1]
        return (
            F.normalize(emb[0], dim=-1),
            random_mask(torch.ones(1, window.length, dtype=torch.bool), 0.5, generator=generator)[0],
            generator,
        )

    windows = tile_windows(ok_videos(store), pre.max_segments)
    total, n = 0.0, 0
    for window in windows:
        unit, hidden, _ = window_masks(window)
        src = nearest_visible(~hidden[None])[0]
        for t in hidden.nonzero()[:, 0].tolist():
            total += float((unit[src[t]] - unit[t]).pow(2).mean())
            n += 1
    assert n == result.reconstructed_segments
    assert result.copy_nearest_mse == pytest.approx(total / n, rel=1e-6)
    val = reconstruction_mse(pre, store, decoder="all")  # the two videos training held out
    assert val.videos == 2 and val.reconstructed_segments < result.reconstructed_segments
    # By default the checkpoint's own decoder mask (adaptive, kappa 0.15) picks what is reconstructed.
    own = reconstruction_mse(pre, store, split="all", ratio=0.5)
    assert own.decoder == pre.pretrain["decoder_mask"] == "adaptive"
    expected = 0
    for window in windows:
        _, hidden, _ = window_masks(window)
        importance = read_batch(store, [window]).importance
        expected += int(decoder_adaptive(hidden[None], importance, 0.15).sum())
    assert own.reconstructed_segments == expected < result.reconstructed_segments
    with pytest.raises(ValueError, match="nosuch"):
        reconstruction_mse(pre, store, decoder="nosuch")


def test_evaluate_command_prints_both_mses(run, capsys):
    uri, model_path = run
    assert lvmae_main(["evaluate", "--store", uri, "--checkpoint", str(model_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "model reconstruction MSE" in out and "copy-nearest-visible MSE" in out


def test_embed_sequences_encodes_again_a_source_shard_that_was_re_extracted(run, tmp_path):
    uri, model_path = run
    pre = load_pretrained(model_path)
    source_copy = tmp_path / "source"
    import shutil

    shutil.copytree(uri, source_copy)
    out_uri = str(tmp_path / "lvmae-store")
    embed_sequences(Store.open(source_copy), pre, out_uri, progress=False)
    # Re-extract one source shard (same id, same videos, new generation with other embeddings).
    source = Store.create(source_copy, Store.open(source_copy).identity)
    shard = source.videos(status="ok")["shard_id"][0].as_py()
    rows = source.videos().filter(pc.equal(source.videos()["shard_id"], shard)).sort_by("row_start").to_pylist()
    with source.shard_writer(shard, overwrite=True) as w:
        for row in rows:
            if row["status"] != "ok":
                w.add_failed(video_id=row["video_id"], uri=row["uri"], error=row["error"])
                continue
            seq = source.sequence(row["video_id"])
            w.add_video(
                video_id=row["video_id"],
                uri=row["uri"],
                duration=row["duration"],
                fps=row["fps"],
                emb=-seq.emb,
                importance=seq.importance,
                span=seq.span,
                extra={"procedure": row["procedure"]},
            )
    again = embed_sequences(Store.open(source_copy), pre, out_uri, progress=False)
    assert again["shards_written"] == 1 and again["shards_skipped"] == 1
    out = Store.open(out_uri)
    assert out.commit_of(shard).attrs["source_generation"] == Store.open(source_copy).commit_of(shard).generation
    video = next(r["video_id"] for r in rows if r["status"] == "ok")
    expected = sequence_features(
        pre.model, -Store.open(uri).sequence(video).emb.astype(np.float32), chunk=pre.max_segments
    )
    assert np.allclose(out.sequence(video).emb, expected.astype(np.float16), atol=1e-3)
