"""`lvmae probe` end to end on a synthetic procedure store with a tiny LV-MAE trained on it."""

import json

import pytest

from lvmae import cli
from lvmae.foundation.schema import load_config
from lvmae.pretrain.checkpoint import MODEL
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.pretrain.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    uri = str(root / "store")
    write_procedure_store(uri, videos=40, segments=(40, 80), procedures=4)
    cfg = load_config(
        None,
        ["pretrain.preset=tiny", "pretrain.steps=20", "pretrain.max_segments=32", "pretrain.min_segments=8"],
        use_default_file=False,
    )
    train(cfg.pretrain, store_uri=uri, out_dir=root / "run")
    return uri, root / "run" / MODEL


def probe(capsys, *argv):
    status = cli.main(["probe", *argv, "--set", "pretrain.device=cpu"])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_every_row_of_the_table_in_one_run(run, capsys):
    uri, model = run
    status, out, err = probe(
        capsys, "--label", "procedure", "--store", uri, "--checkpoint", str(model), "--seeds", "2", "--json"
    )
    assert status == 0, err
    report = json.loads(out)
    assert report["label"] == "procedure" and report["classes"] == 4 and report["seeds"] == [0, 1]
    rows = {(r["features"], r["head"], r["labels_per_class"]) for r in report["rows"]}
    expected = {("raw", h) for h in ("linear", "attentive", "attentive-pos")}
    expected |= {(f, h) for f in ("lvmae-init", "lvmae") for h in ("linear", "attentive")}
    assert {(f, h) for f, h, _ in rows} == expected
    assert {n for _, _, n in rows} == {"all", 1, 2, 4}  # 6 training videos a class: 1, 2, 4 and all
    for row in report["rows"]:
        assert len(row["accuracies"]) == 2 and 0 <= row["accuracy_mean"] <= 1 and row["test_videos"] == 8
        assert set(row["per_group"]) == {"0", "1"}  # the store's group column, found by name
    assert "trained on this store's videos" in err  # the summary says these are not held-out figures
    by_row = {(r["features"], r["head"], r["labels_per_class"]): r for r in report["rows"]}
    for row in report["rows"]:
        assert row["accuracy_mean"] == pytest.approx(sum(row["accuracies"]) / len(row["accuracies"]))
    # The trained encoder's rows are its own, not the random init's: some accuracy differs.
    pairs = [(h, n) for h in ("linear", "attentive") for n in ("all", 1, 2, 4)]
    assert any(by_row[("lvmae", h, n)]["accuracies"] != by_row[("lvmae-init", h, n)]["accuracies"] for h, n in pairs)


def test_table_and_errors(run, capsys):
    uri, _ = run
    status, out, err = probe(capsys, "--label", "procedure", "--store", uri, "--no-checkpoint", "--seeds", "1")
    assert status == 0, err
    assert "probe accuracy on 'procedure'" in out and "attentive-pos" in out and "lvmae-init" not in out
    status, _, err = probe(capsys, "--label", "nosuch", "--store", uri, "--no-checkpoint")
    assert status != 0 and "no manifest column 'nosuch'" in err and "Traceback" not in err
    status, _, err = probe(capsys, "--label", "procedure", "--store", uri, "--seeds", "0", "--no-checkpoint")
    assert status != 0 and "--seeds 0" in err
