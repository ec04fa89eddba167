"""The Ray trainer's record of each start of its workers: how a restarted worker knows to resume."""

import json

import pytest

from lvmae.foundation.loader import ConfigError
from lvmae.foundation.schema import load_config
from lvmae.pretrain.ray_runner import ATTEMPTS, _record_attempt, read_attempts, worker_unit


def test_attempts_of_one_run_add_up_and_another_run_starts_its_own(tmp_path):
    assert read_attempts(tmp_path, "run-a") == []
    _record_attempt(tmp_path, "run-a", 0, ["n1", "n2"])
    _record_attempt(tmp_path, "run-a", 10, ["n1", "n1"])
    attempts = read_attempts(tmp_path, "run-a")
    assert [(a["from_step"], a["nodes"]) for a in attempts] == [(0, ["n1", "n2"]), (10, ["n1", "n1"])]
    assert read_attempts(tmp_path, "run-b") == []  # a later run in the folder is not a restart of this one
    _record_attempt(tmp_path, "run-b", 0, ["n3"])
    assert json.loads((tmp_path / ATTEMPTS).read_text())["run"] == "run-b"
    assert len(read_attempts(tmp_path, "run-b")) == 1 and read_attempts(tmp_path, "run-a") == []


def test_failure_and_placement_settings():
    p = load_config(None, ["pretrain.max_failures=-1", "pretrain.placement=spread"], use_default_file=False).pretrain
    assert p.max_failures == -1 and p.placement == "spread"
    with pytest.raises(ConfigError, match="max_failures"):
        load_config(None, ["pretrain.max_failures=-2"], use_default_file=False)
    with pytest.raises(ConfigError, match="placement"):
        load_config(None, ["pretrain.placement=strict"], use_default_file=False)
    gpu = load_config(None, ["pretrain.use_gpu=true", "pretrain.cpus_per_worker=4"], use_default_file=False).pretrain
    assert worker_unit(gpu) == {"pretrain.cpus_per_worker=4 with pretrain.use_gpu=true": {"CPU": 4.0, "GPU": 1.0}}
