import logging
from pathlib import Path

import pytest
import torch

from lvmae.foundation import runtime
from lvmae.foundation.runtime import (
    ResourceError,
    check_fits_a_node,
    check_resources,
    compute_dtype,
    init_ray,
    ray_address,
    ray_node_id,
    resolve_device,
)
from lvmae.foundation.schema import RayConfig


def test_ray_address_env_wins_over_the_config(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) is None and ray_address("auto") == "auto"
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert ray_address("auto") == "10.1.2.3:6379" and ray_address(None) == "10.1.2.3:6379"


class FakeRay:
    """Stands in for the `ray` module's init/shutdown bookkeeping only; no cluster is started."""

    def __init__(self, running: bool = False):
        self.running = running
        self.calls: list[dict] = []

    def install(self, monkeypatch):
        import ray

        monkeypatch.setattr(ray, "is_initialized", lambda: self.running)
        monkeypatch.setattr(ray, "init", self.init)
        return self

    def init(self, **kwargs):
        self.calls.append(kwargs)
        self.running = True


def test_init_ray_joins_the_env_address_and_says_it_started_ray(monkeypatch):
    fake = FakeRay().install(monkeypatch)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert init_ray(RayConfig(address="auto", num_cpus=3)) is True
    assert fake.calls[0]["address"] == "ray://head:10001" and "num_cpus" not in fake.calls[0]


def test_init_ray_starts_a_local_ray_and_leaves_a_running_one_alone(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    fake = FakeRay().install(monkeypatch)
    assert init_ray(RayConfig(num_cpus=3)) is True
    assert fake.calls[-1]["num_cpus"] == 3 and "address" not in fake.calls[-1]
    assert init_ray(RayConfig(num_cpus=3)) is False and len(fake.calls) == 1  # already running: not ours


def test_ray_messages_go_to_its_log_folder_unless_verbose(monkeypatch, tmp_path):
    import ray  # noqa: F401  (sets up the "ray" logger and its console handler)

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(runtime, "_session_log_dir", lambda: tmp_path / "logs")
    said = logging.getLogger("ray.auth")

    class Talking(FakeRay):
        def init(self, **kwargs):  # Ray says something while it starts, before its session folder is known
            super().init(**kwargs)
            said.warning("token auth is on")

    fake = Talking().install(monkeypatch)
    ray_logger = logging.getLogger("ray")
    before = (list(ray_logger.handlers), {h: list(h.filters) for h in ray_logger.handlers})
    try:
        init_ray(RayConfig())
        assert fake.calls[-1]["log_to_driver"] is False
        consoles = [h for h in ray_logger.handlers if type(h).__name__ == "PlainRayHandler"]  # Ray's own
        assert consoles and all(any(isinstance(f, runtime._ErrorsOnly) for f in h.filters) for h in consoles)
        said.warning("later")
        assert "token auth is on" in (tmp_path / "logs" / "lvmae-driver.log").read_text()
        assert "later" in (tmp_path / "logs" / "lvmae-driver.log").read_text()
    finally:
        for handler in ray_logger.handlers[:]:
            if handler not in before[0]:
                ray_logger.removeHandler(handler)
                handler.close()
        for handler, filters in before[1].items():
            handler.filters[:] = filters
    level = runtime.log.level
    runtime.log.setLevel(logging.INFO)  # what -v sets up
    try:
        fake.running = False
        init_ray(RayConfig())
    finally:
        runtime.log.setLevel(level)
    assert fake.calls[-1]["log_to_driver"] is True


def test_a_new_ray_session_takes_over_the_session_log(monkeypatch, tmp_path):
    import logging.handlers

    ray_logger = logging.getLogger("ray")
    before = list(ray_logger.handlers)
    try:
        for session in ("one", "two"):
            monkeypatch.setattr(runtime, "_session_log_dir", lambda s=session: tmp_path / s / "logs")
            runtime._release_to_session_log(logging.handlers.MemoryHandler(capacity=10))
        logs = [h for h in ray_logger.handlers if isinstance(h, runtime._SessionLog)]
        assert [Path(h.baseFilename).parts[-3] for h in logs] == ["two"]  # the earlier session's is gone
        logging.getLogger("ray.test").warning("after both")
        assert "after both" in (tmp_path / "two" / "logs" / "lvmae-driver.log").read_text()
        assert "after both" not in (tmp_path / "one" / "logs" / "lvmae-driver.log").read_text()
    finally:
        for handler in ray_logger.handlers[:]:
            if handler not in before:
                ray_logger.removeHandler(handler)
                handler.close()


def test_check_resources_names_every_setting_of_the_resource_that_does_not_fit():
    request = {"CPU": {"a.x=2 x a.y=1": 2.0, "a.z=1": 1.0}, "GPU": {"a.g=1": 1.0}}
    check_resources(request, {"CPU": 3.0, "GPU": 1.0})
    with pytest.raises(
        ResourceError,
        match=r"a\.x=2 x a\.y=1 \(2\) plus a\.z=1 \(1\) ask Ray for 3 CPUs, but the "
        r"cluster has 2; it would hang; lower a\.x",
    ):
        check_resources(request, {"CPU": 2.0, "GPU": 1.0}, consequence="it would hang", remedy="lower a.x")
    with pytest.raises(ResourceError, match=r"a\.g=1 asks Ray for 1 GPUs, but the cluster has 0"):
        check_resources(request, {"CPU": 8.0})


def test_a_unit_that_no_node_holds_is_refused_however_much_the_cluster_has_in_all():
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 4.0}]
    check_fits_a_node({"w=4": {"CPU": 4.0}, "g": {"CPU": 2.0, "GPU": 1.0}}, nodes)
    with pytest.raises(
        ResourceError,
        match=r"w=3 with g=1 asks for 3 CPU, 1 GPU on one node, but no node of the 2 has that "
        r"\(the most: 4 CPU, 1 GPU\); lower w",
    ):
        check_fits_a_node({"w=3 with g=1": {"CPU": 3.0, "GPU": 1.0}}, nodes, remedy="lower w")
    with pytest.raises(ResourceError, match=r"no node of the 0 has that"):
        check_fits_a_node({"w=1": {"CPU": 1.0}}, [])


def test_outside_ray_a_process_has_no_node():
    assert ray_node_id() == ""


def test_devices_and_dtypes():
    assert resolve_device("cpu").type == "cpu"
    assert compute_dtype("auto", torch.device("cpu")) == torch.float32
    assert compute_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert compute_dtype("fp16", torch.device("cpu")) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(ResourceError, match="pretrain.device is 'cuda:1'"):
            resolve_device("cuda:1", "pretrain.device")
