"""Extraction and Ray Train on a real two-node Ray cluster on this machine (`tests.cluster`), joined
through RAY_ADDRESS as a user joins theirs: work on both nodes, the same store as the local runner,
and a node lost mid-job losing nothing (marker `cluster`; `make test` runs them)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lvmae.extract.runner import ExtractReport
from lvmae.foundation.runtime import ResourceError
from lvmae.pretrain import ray_runner
from lvmae.pretrain.synthetic import write_procedure_store
from lvmae.store import Store
from lvmae.toyworld.encoder import SHIPPED_WEIGHTS
from tests.cluster import HEAD, WORKER, LocalCluster, join_from_this_process

from .conftest import assert_same_store, extract_with, make_config, store_contents

pytest.importorskip("ray")
pytest.importorskip("psutil")
pytestmark = pytest.mark.cluster

# What fits a cluster of two 2-CPU nodes, and the head alone once the worker node is lost: two
# encoder actors and decode tasks of half a CPU each.
EXTRACT = {
    "extract.actors": 2,
    "extract.actor_num_cpus": 0.5,
    "extract.decode_num_cpus": 0.5,
    "extract.shard_videos": 1,
    "extract.chunk_segments": 4,
    "extract.encode_batch": 8,
}
# Two Ray Train workers, one per node; a checkpoint every 10 of 40 steps.
PRETRAIN = {
    "pretrain.trainer": "ray",
    "pretrain.placement": "spread",
    "pretrain.num_workers": 2,
    "pretrain.cpus_per_worker": 1,
    "pretrain.max_failures": 2,
    "pretrain.preset": "tiny",
    "pretrain.steps": 40,
    "pretrain.warmup": 5,
    "pretrain.checkpoint_interval": 10,
    "pretrain.max_segments": 32,
    "pretrain.min_segments": 8,
    "pretrain.val_interval": 0,
    "pretrain.device": "cpu",
}


@pytest.fixture(scope="module")
def cluster():
    """The two-node cluster, and this process's environment pointing at it (RAY_ADDRESS, its token)."""
    with pytest.MonkeyPatch.context() as env:
        cluster = LocalCluster()
        for key, value in cluster.env.items():
            env.setenv(key, value)
        join_from_this_process()
        with cluster:
            yield cluster


@pytest.fixture
def both_nodes(cluster):
    """Both nodes up: a test that killed the worker node leaves a replacement for the next."""
    cluster.ensure_worker()
    return cluster


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, tiny_tokenizer, toy_corpus):
    """The local runner's store of the toy corpus: what the cluster's runs must equal."""
    cfg = make_config(tmp_path_factory.mktemp("local"), tiny_tokenizer, **EXTRACT)
    extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="local")
    return store_contents(cfg.paths.store)


def lvmae(*args, env, **popen):
    """`lvmae ARGS` in a child process, as a user on a cluster node runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lvmae", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def child_env(cluster):
    return {**os.environ, **cluster.env}


def sets(overrides):
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def test_extraction_on_two_nodes_equals_the_local_run(both_nodes, tmp_path, tiny_tokenizer, toy_corpus, local_store):
    nodes = both_nodes.node_ids()
    # Encoder actors of 1.5 CPUs: one fits a 2-CPU node, so the two go one to each node, each beside
    # one decode task of 0.5.
    spread = {"extract.actor_num_cpus": 1.5, "extract.decode_tasks": 2}
    cfg = make_config(tmp_path, tiny_tokenizer, **{**EXTRACT, **spread})
    report: ExtractReport = extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")
    assert report.videos_ok == 4 and report.videos_failed == 0
    # Decode tasks and encoder actors ran on both nodes; the rows say where.
    assert set(report.nodes) == set(nodes.values()), (report.nodes, nodes)
    for work in report.nodes.values():
        assert work["videos"] >= 1 and work["segments"] >= 1, report.nodes
    assert sum(w["videos"] for w in report.nodes.values()) == 4
    assert sum(w["segments"] for w in report.nodes.values()) == report.segments
    assert "Ray nodes (2)" in report.summary(str(cfg.paths.store), "ray").render()
    assert_same_store(local_store, store_contents(cfg.paths.store))


def test_losing_the_worker_node_mid_extraction_loses_nothing(
    both_nodes, tmp_path, tiny_tokenizer, toy_corpus, local_store
):
    cfg = make_config(tmp_path, tiny_tokenizer, **EXTRACT)
    store = Path(str(cfg.paths.store))
    args = ["extract", "--runner", "ray", "--inputs", str(toy_corpus.root / "videos.parquet"), "--store", str(store)]
    args += sets({"encoder.pretrained": SHIPPED_WEIGHTS, "tokenizer.checkpoint": tiny_tokenizer, **EXTRACT})
    proc = lvmae(*args, env=child_env(both_nodes))
    deadline = time.monotonic() + 180
    while not list(store.glob("manifest/*.parquet")):  # the first shard is committed: the job is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    both_nodes.kill_raylet(WORKER)
    assert proc.poll() is None, "the job ended before the node was lost"
    out = finish(proc)
    assert set(both_nodes.wait_for_nodes({HEAD})) == {HEAD}
    rows = Store.open(str(store)).videos().to_pylist()
    ids = sorted(r["video_id"] for r in rows)
    assert ids == sorted(toy_corpus.videos.column("id").to_pylist()), "every video exactly once"
    assert all(r["status"] == "ok" for r in rows), out
    verify = subprocess.run(
        [sys.executable, "-m", "lvmae", "store", "verify", str(store)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert_same_store(local_store, store_contents(str(store)))


def losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_pretraining_survives_losing_a_node_and_resumes_exactly(both_nodes, tmp_path):
    store = tmp_path / "store"
    write_procedure_store(str(store), videos=4, segments=(40, 80))
    env = child_env(both_nodes)
    nodes = both_nodes.node_ids()

    def pretrain(out):
        return lvmae("pretrain", "--store", str(store), "--out", str(out), *sets(PRETRAIN), env=env)

    whole = tmp_path / "uninterrupted"
    out = finish(pretrain(whole))
    attempts = json.loads((whole / ray_runner.ATTEMPTS).read_text())["attempts"]
    assert len(attempts) == 1 and sorted(attempts[0]["nodes"]) == sorted(nodes.values()), "one worker per node"
    assert "2 workers on 2 nodes" in out

    cut = tmp_path / "interrupted"
    proc = pretrain(cut)
    deadline = time.monotonic() + 180
    while not ((cut / "metrics.jsonl").exists() and len(losses(cut)) >= 12):  # past the step-10 checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    both_nodes.kill_node(WORKER)
    assert proc.poll() is None, "the run ended before the node was lost"
    out = finish(proc)
    attempts = json.loads((cut / ray_runner.ATTEMPTS).read_text())["attempts"]
    assert [a["from_step"] for a in attempts] == [0, 10], attempts
    assert set(attempts[1]["nodes"]) == {nodes[HEAD]}, "the restart ran on the node that was left"
    assert "restarts" in out and "resumed at step 10" in out
    assert losses(cut) == losses(whole), "the resumed run's losses equal the uninterrupted run's, step for step"
    assert len(losses(whole)) == PRETRAIN["pretrain.steps"]


@pytest.mark.parametrize(
    "runner, overrides, named",
    [
        ("extract", {"extract.actors": 9}, "extract.actors=9"),  # more CPUs than the cluster has
        ("extract", {"extract.actors": 1, "extract.actor_num_cpus": 3}, "extract.actor_num_cpus=3"),  # no node that big
        ("pretrain", {"pretrain.num_workers": 5}, "pretrain.num_workers=5"),
        ("pretrain", {"pretrain.num_workers": 1, "pretrain.cpus_per_worker": 3}, "pretrain.cpus_per_worker=3"),
    ],
)
def test_a_cluster_without_the_resources_fails_at_once_naming_the_settings(
    both_nodes, tmp_path, tiny_tokenizer, toy_corpus, runner, overrides, named
):
    cfg = make_config(tmp_path, tiny_tokenizer, **{**EXTRACT, **PRETRAIN, **overrides})
    began = time.monotonic()
    with pytest.raises(ResourceError) as refused:
        if runner == "extract":
            extract_with(cfg, inputs=toy_corpus.root / "videos.parquet", runner="ray")
        else:
            store = tmp_path / "store"
            write_procedure_store(str(store), videos=2, segments=(20, 30))
            ray_runner.run(cfg.pretrain, cfg.ray, store_uri=str(store), out_dir=tmp_path / "run")
    assert named in str(refused.value)
    assert time.monotonic() - began < 60
    assert not Path(str(cfg.paths.store)).exists() or runner == "pretrain"
