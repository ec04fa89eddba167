import json

import pytest
import torch

from lvmae.foundation.schema import load_config
from lvmae.pretrain.checkpoint import CHECKPOINT, METRICS, MODEL, PretrainError, load_state, read_metrics, save_state
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.pretrain.train import RunEnv, train
from lvmae.store import Store


def config(*overrides):
    base = [
        "pretrain.preset=tiny",
        "pretrain.steps=30",
        "pretrain.batch_size=2",
        "pretrain.max_segments=64",
        "pretrain.min_segments=8",
        "pretrain.warmup=5",
        "pretrain.lr=0.002",
        "pretrain.val_interval=10",
        "pretrain.val_batches=2",
        "pretrain.checkpoint_interval=10",
    ]
    return load_config(None, base + list(overrides), use_default_file=False).pretrain


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("train") / "store")
    write_procedure_store(uri, videos=8, segments=(30, 200), tokenizer=True)
    return uri


class Killed(Exception):
    pass


def kill_at(step):
    def report(row):
        if row["step"] == step:
            raise Killed(step)

    return report


def losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(out) if "loss" in r]


def val_losses(out):
    return [(r["step"], r["val_loss"]) for r in read_metrics(out) if "val_loss" in r]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "pretrain.encoder_mask=adaptive",
            "pretrain.decoder_mask=random",
            "pretrain.code_head=true",
            "pretrain.checkpoint_interval=7",
        ],
    ],
    ids=["default", "adaptive-random-code"],
)
def test_kill_and_resume_gives_the_same_loss_curve(tmp_path, store_uri, extra):
    cfg = config(*extra)
    whole = train(cfg, store_uri=store_uri, out_dir=tmp_path / "whole")
    assert whole.steps == 30

    with pytest.raises(Killed):  # dies after step 17 was logged, 7 or 3 steps past its last checkpoint
        train(cfg, store_uri=store_uri, out_dir=tmp_path / "killed", env=RunEnv(report=kill_at(17)))
    saved = load_state(tmp_path / "killed" / CHECKPOINT)["step"]
    assert saved in (10, 14)
    assert max(s for s, _ in losses(tmp_path / "killed")) == 17
    resumed = train(cfg, store_uri=store_uri, out_dir=tmp_path / "killed", resume=True)
    assert resumed.resumed_from == saved

    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")  # exactly, step for step
    assert val_losses(tmp_path / "killed") == val_losses(tmp_path / "whole")
    a = load_state(tmp_path / "whole" / MODEL)["model"]
    b = load_state(tmp_path / "killed" / MODEL)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_writes_metrics_checkpoint_and_model(tmp_path, store_uri):
    result = train(config(), store_uri=store_uri, out_dir=tmp_path)
    rows = read_metrics(tmp_path)
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(30))
    assert {"loss", "recon", "lr", "grad_norm", "segments", "window", "step_s"} <= set(steps[0])
    assert [r["step"] for r in rows if "val_loss" in r] == [9, 19, 29]
    state = load_state(tmp_path / CHECKPOINT)
    assert state["step"] == state["data_position"] == 30
    assert {"model", "optimizer", "scheduler", "rng", "model_config", "pretrain", "store"} <= set(state)
    assert result.params > 0 and result.segments_per_s > 0 and result.val_loss is not None
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_an_existing_run_needs_resume_and_a_matching_model(tmp_path, store_uri):
    train(config("pretrain.steps=10"), store_uri=store_uri, out_dir=tmp_path)
    with pytest.raises(PretrainError, match="--resume"):
        train(config("pretrain.steps=10"), store_uri=store_uri, out_dir=tmp_path)
    with pytest.raises(PretrainError, match="preset"):
        train(config("pretrain.steps=10", "pretrain.preset=small"), store_uri=store_uri, out_dir=tmp_path, resume=True)
    # Resuming a finished run trains nothing more.
    assert train(config("pretrain.steps=10"), store_uri=store_uri, out_dir=tmp_path, resume=True).steps == 10


def test_code_head_needs_a_tokenizer(tmp_path):
    uri = str(tmp_path / "plain")
    write_procedure_store(uri, videos=3, tokenizer=False)
    with pytest.raises(PretrainError, match="pretrain.code_head"):
        train(config("pretrain.code_head=true"), store_uri=uri, out_dir=tmp_path / "out")


@pytest.mark.parametrize("segments, ratio", [(1, 0.75), (2, 0.25)], ids=["one-segment", "two-segments-low-ratio"])
def test_a_store_no_window_of_which_can_hide_anything_is_refused(tmp_path, segments, ratio):
    """Videos too short to hide a segment under the ratio: every step's loss would be 0 and the run useless."""
    uri = str(tmp_path / "short")
    write_procedure_store(uri, videos=4, segments=(segments, segments))
    with pytest.raises(
        PretrainError, match=f"hides none.*pretrain.mask_ratio|pretrain.mask_ratio {ratio:g} hides none"
    ):
        train(config(f"pretrain.mask_ratio={ratio}"), store_uri=uri, out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / MODEL).exists()
    # One segment more and the same ratio hides one: it trains.
    uri = str(tmp_path / "long-enough")
    write_procedure_store(uri, videos=4, segments=(segments + 2, segments + 2))
    assert (
        train(config(f"pretrain.mask_ratio={ratio}", "pretrain.steps=2"), store_uri=uri, out_dir=tmp_path / "ok").steps
        == 2
    )


def test_save_state_replaces_whole_files(tmp_path):
    path = tmp_path / "x.pt"
    save_state({"a": torch.ones(3)}, path)
    save_state({"a": torch.zeros(3)}, path)
    assert torch.equal(load_state(path)["a"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainError, match="bad.pt"):
        load_state(tmp_path / "bad.pt")


def test_metrics_rows_are_json_lines(tmp_path, store_uri):
    train(config("pretrain.steps=3", "pretrain.val_fraction=0"), store_uri=store_uri, out_dir=tmp_path)
    lines = (tmp_path / METRICS).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["step"] == i for i, line in enumerate(lines))


def test_a_torn_last_metrics_line_is_dropped(tmp_path):
    (tmp_path / METRICS).write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.9}\n{"step": 2, "lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1]


def test_resume_on_another_store_is_refused_unless_forced(tmp_path, store_uri, caplog):
    grown = str(tmp_path / "grown")  # same identity, one more video
    write_procedure_store(grown, videos=9, segments=(30, 200), tokenizer=True)
    plain = str(tmp_path / "plain")  # same videos, another identity (no tokenizer)
    write_procedure_store(plain, videos=8, segments=(30, 200), tokenizer=False)
    out = tmp_path / "run"
    train(config("pretrain.steps=10"), store_uri=store_uri, out_dir=out)
    state = load_state(out / CHECKPOINT)
    assert {"uri", "identity", "train_fingerprint", "train_videos", "train_segments"} <= set(state["store"])

    more = config("pretrain.steps=12")
    with pytest.raises(PretrainError, match="another identity \\(differs in tokenizer") as e:
        train(more, store_uri=plain, out_dir=out, resume=True)
    assert store_uri in str(e.value) and plain in str(e.value) and "--force" in str(e.value)
    with pytest.raises(PretrainError, match="other training videos") as e:
        train(more, store_uri=grown, out_dir=out, resume=True)
    assert store_uri in str(e.value) and grown in str(e.value)
    assert load_state(out / CHECKPOINT)["step"] == 10  # nothing was touched

    # A changed val_fraction is a changed setting, not another store.
    assert train(
        config("pretrain.steps=10", "pretrain.val_fraction=0.5"), store_uri=store_uri, out_dir=out, resume=True
    )

    with caplog.at_level("WARNING", logger="lvmae.pretrain"):
        result = train(more, store_uri=grown, out_dir=out, resume=True, force=True)
    assert result.resumed_from == 10 and result.steps == 12
    assert "resuming anyway (--force)" in caplog.text and grown in caplog.text
    assert load_state(out / CHECKPOINT)["store"]["uri"] == load_state(out / MODEL)["store"]["uri"] != store_uri


def test_an_old_checkpoint_without_a_fingerprint_is_checked_on_identity_only(tmp_path, store_uri):
    grown = str(tmp_path / "grown")
    write_procedure_store(grown, videos=9, segments=(30, 200), tokenizer=True)
    out = tmp_path / "run"
    train(config("pretrain.steps=10"), store_uri=store_uri, out_dir=out)
    state = load_state(out / CHECKPOINT)
    state["store"] = {k: state["store"][k] for k in ("uri", "identity")}  # as saved before fingerprints
    save_state(state, out / CHECKPOINT)
    assert train(config("pretrain.steps=11"), store_uri=grown, out_dir=out, resume=True).resumed_from == 10


def test_a_code_head_checkpoint_reconstructs_and_is_scored(tmp_path, store_uri):
    from lvmae.evaluation.reconstruction import reconstruction_mse
    from lvmae.pretrain.checkpoint import load_pretrained

    train(config("pretrain.code_head=true", "pretrain.steps=4"), store_uri=store_uri, out_dir=tmp_path / "out")
    pretrained = load_pretrained(tmp_path / "out" / MODEL)
    assert pretrained.model.code_head is not None
    result = reconstruction_mse(pretrained, Store.open(store_uri), split="all", ratio=0.5)
    assert result.reconstructed_segments > 0 and result.model_mse > 0
