"""Both Ray runners start Ray through `foundation.runtime.init_ray`: RAY_ADDRESS wins over `ray.address`,
and a runner shuts down only a Ray it started."""

import pytest

from lvmae.foundation.runtime import ResourceError
from lvmae.pretrain import ray_runner
from lvmae.pretrain.synthetic import write_procedure_store

from .conftest import extract_with, make_config

ray = pytest.importorskip("ray")


class Stop(Exception):
    pass


@pytest.fixture
def pretrain_store(tmp_path):
    uri = str(tmp_path / "pretrain-store")  # make_config's paths.store is the extraction's
    write_procedure_store(uri, videos=3, segments=(20, 40))
    return uri


def run_pretrain(cfg, store_uri, tmp_path):
    return ray_runner.run(cfg.pretrain, cfg.ray, store_uri=store_uri, out_dir=tmp_path / "run")


def run_extraction(cfg, toy_corpus):
    return extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")


@pytest.mark.parametrize("runner", ["extract", "pretrain"])
def test_ray_address_from_the_environment_beats_the_config(
    runner, tmp_path, tiny_tokenizer, toy_corpus, pretrain_store, monkeypatch
):
    joined = []

    def init(**kwargs):  # where the runner would join a cluster; stop there
        joined.append(kwargs.get("address"))
        raise Stop

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    cfg = make_config(tmp_path, tiny_tokenizer, **{"ray.address": "127.0.0.1:1", "pretrain.trainer": "ray"})
    for env, expected in ((None, "127.0.0.1:1"), ("127.0.0.1:2", "127.0.0.1:2")):
        if env:
            monkeypatch.setenv("RAY_ADDRESS", env)
        else:
            monkeypatch.delenv("RAY_ADDRESS", raising=False)
        with pytest.raises(Stop):
            run_extraction(cfg, toy_corpus) if runner == "extract" else run_pretrain(cfg, pretrain_store, tmp_path)
        assert joined[-1] == expected


@pytest.mark.parametrize("runner", ["extract", "pretrain"])
def test_a_runner_shuts_down_only_the_ray_it_started(
    runner, tmp_path, tiny_tokenizer, toy_corpus, pretrain_store, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Requests that cannot fit 2 CPUs: the runner gets as far as Ray and its resource check, then stops.
    cfg = make_config(tmp_path, tiny_tokenizer, **{"extract.actors": 2, "pretrain.num_workers": 3})

    def attempt():
        with pytest.raises(ResourceError):
            run_extraction(cfg, toy_corpus) if runner == "extract" else run_pretrain(cfg, pretrain_store, tmp_path)

    assert not ray.is_initialized()
    attempt()  # started its own local Ray: shut it down again
    assert not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        attempt()  # the caller's Ray: left running
        assert ray.is_initialized()
    finally:
        ray.shutdown()
