import json

import numpy as np
import pytest

from lvmae import cli
from lvmae.store import Store, StoreIdentity


@pytest.fixture
def store_path(tmp_path):
    ident = StoreIdentity(
        encoder={"name": "toyclip", "weights_sha256": "f" * 64}, tokenizer=None, segment={"seconds": 2.0}
    )
    store = Store.create(tmp_path / "store", ident)
    with store.shard_writer("000001") as w:
        n = 900  # 30 minutes of 2 s segments
        t0 = np.arange(n, dtype=np.float32) * 2
        w.add_video(
            video_id="v1",
            uri="/v1.mp4",
            duration=1800.0,
            fps=8.0,
            emb=np.ones((n, 4)),
            importance=np.zeros(n),
            span=np.stack([t0, t0 + 2], 1),
        )
        w.add_failed(video_id="v2", uri="/v2.mp4", error="no video stream")
    return str(tmp_path / "store")


def test_store_info_json(store_path, capsys):
    assert cli.main(["store", "info", "--json", store_path]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["videos_ok"] == 1 and facts["videos_failed"] == 1 and facts["segments"] == 900
    assert facts["hours"] == 0.5 and facts["emb_dim"] == 4 and facts["token_grid"] is None
    assert facts["identity"]["encoder"]["name"] == "toyclip"
    assert facts["failed"] == [{"video_id": "v2", "error": "no video stream"}]


def test_store_info_summary(store_path, capsys):
    assert cli.main(["store", "info", store_path]) == 0
    out = capsys.readouterr().out
    for line in (
        "videos ok             1",
        "videos failed         1",
        "segments              900",
        "hours of video        0.5",
        "embedding width D     4",
        "tokenizer             none",
        "failed v2: no video stream",
    ):
        assert line in out


def test_store_info_defaults_to_the_configured_store(store_path, capsys):
    assert cli.main(["store", "info", "--json", "--set", f"paths.store={store_path}"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 900


def test_store_verify_ok_exits_zero(store_path, capsys):
    assert cli.main(["store", "verify", store_path]) == 0
    assert "verify " + store_path + ": ok" in capsys.readouterr().out


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["store", "info", str(tmp_path / "nothing")]) == 1
    assert "lvmae store: error: no store at" in capsys.readouterr().err
