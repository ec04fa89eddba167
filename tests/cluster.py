"""A real Ray cluster of two nodes on this machine, for the `cluster` tests.

`ray start --head` and `ray start --address HEAD` each start a node of their own: a raylet with its
own CPUs, temp folder and object store, and a custom resource naming the node (`lvmae_head`,
`lvmae_worker`), so work can be forced onto one node and where it ran can be checked. Both run with
`--block` in sessions of their own; tearing down signals only the processes of those sessions (the
raylets, their agents and workers), never another Ray on the machine. The cluster uses token
authentication, as `ray start --head` does by default, with Ray's default token file
(~/.ray/auth_token, generated when missing, as `ray.init()` does for a local Ray): every process on
this machine reads the same one, and `env` turns token mode on for a process that joins.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HEAD, WORKER = "head", "worker"
RESOURCE = {HEAD: "lvmae_head", WORKER: "lvmae_worker"}  # one of each on its node
STARTED = "Ray runtime started"


def _ray() -> str:
    """This environment's `ray` command."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


def join_from_this_process() -> None:
    """Make `LocalCluster.env`, once set in os.environ, take effect in this process even when Ray was
    imported before: Ray reads the authentication mode once, at import."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    process: subprocess.Popen
    log: Path

    def processes(self) -> list[psutil.Process]:
        """Every process of this node: its `ray start --block` session (Ray's workers move to process
        groups of their own but stay in the session)."""
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getsid(proc.pid) == self.process.pid:
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def raylet(self) -> psutil.Process:
        for proc in self.processes():
            try:
                if proc.name() == "raylet":
                    return proc
            except psutil.Error:
                continue
        raise RuntimeError(f"node {self.name} has no raylet running (log: {self.log})")


@dataclass
class LocalCluster:
    """Start with `start()` (or `with LocalCluster(...) as cluster:`); `env` is what a driver needs."""

    cpus: dict[str, float] = field(default_factory=lambda: {HEAD: 2, WORKER: 2})
    object_store_bytes: int = 300_000_000
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lvc", dir="/tmp")))  # short: unix sockets
    nodes: dict[str, Node] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    workers_started: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that joins the cluster: RAY_ADDRESS and token mode."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token"}

    def head_command(self) -> list[str]:
        """`ray start --head`, as the README's "Running on a cluster" gives it, plus this machine's ports."""
        return [
            "ray", "start", "--head", f"--port={self.port}", f"--num-cpus={self.cpus[HEAD]:g}",
            *self._own_node(HEAD), "--include-dashboard=false",
        ]  # fmt: skip

    def worker_command(self) -> list[str]:
        """`ray start --address HEAD`, as the README gives it."""
        return [
            "ray",
            "start",
            f"--address={self.address}",
            f"--num-cpus={self.cpus[WORKER]:g}",
            *self._own_node(WORKER),
        ]

    def _own_node(self, name: str) -> list[str]:
        """What two nodes on one machine must not share: temp folder, agent ports; and the node's resource."""
        return [
            f"--resources={json.dumps({RESOURCE[name]: 1})}",
            f"--temp-dir={self.root / name}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            "--disable-usage-stats",
            "--block",
        ]

    def start(self) -> LocalCluster:
        subprocess.run([_ray(), "get-auth-token", "--generate"], check=True, capture_output=True)
        try:
            self._start_node(HEAD, self.head_command())
            self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self) -> Node:
        """Start the worker node (again, after it was killed: a replacement node joins)."""
        self.workers_started += 1
        return self._start_node(WORKER, self.worker_command())

    def _start_node(self, name: str, command: list[str], timeout: float = 90.0) -> Node:
        log = self.root / f"{name}-{self.workers_started if name == WORKER else 0}.log"
        env = {**os.environ, **self.env}
        env.pop("RAY_ADDRESS")
        # A lost node is noticed after 5 missed health checks; 1 s apart instead of 3 s, so a test
        # waits 5 s for it instead of 15 s.
        env["RAY_health_check_period_ms"] = "1000"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [_ray(), *command[1:]], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        node = self.nodes[name] = Node(name, process, log)
        deadline = time.monotonic() + timeout
        while STARTED not in log.read_text(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"`{' '.join(command)}` exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(command)}` did not start in {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.2)
        if name == WORKER:
            self.wait_for_nodes({HEAD, WORKER})
        return node

    def node_ids(self) -> dict[str, str]:
        """Ray's node id of each live node, by name."""
        import ray

        connected_here = not ray.is_initialized()
        if connected_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            ids = {}
            for node in ray.nodes():
                for name, resource in RESOURCE.items():
                    if node["Alive"] and resource in node["Resources"]:
                        ids[name] = node["NodeID"]
            return ids
        finally:
            if connected_here:
                ray.shutdown()

    def wait_for_nodes(self, names: set[str], timeout: float = 60.0) -> dict[str, str]:
        """Wait until exactly the nodes `names` are alive (a killed node is marked dead a few seconds later)."""
        deadline = time.monotonic() + timeout
        while True:
            ids = self.node_ids()
            if set(ids) == names:
                return ids
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster's live nodes are {sorted(ids)}, not {sorted(names)}")
            time.sleep(0.5)

    def kill_raylet(self, name: str = WORKER) -> None:
        """SIGKILL the node's raylet: the node is lost, and Ray tears down what ran on it."""
        self.nodes[name].raylet().send_signal(signal.SIGKILL)

    def kill_node(self, name: str = WORKER) -> None:
        """SIGKILL every process of the node at once, as when its machine goes away."""
        for proc in self.nodes[name].processes():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass

    def ensure_worker(self) -> None:
        """Both nodes alive: a worker node killed by an earlier test is replaced (`add_worker` waits
        for both)."""
        node = self.nodes.get(WORKER)
        if node is None or node.process.poll() is not None or WORKER not in self.node_ids():
            if node is not None:
                self._stop_node(node)
            self.add_worker()

    def stop(self) -> None:
        """SIGTERM every process the cluster started, SIGKILL what is left after 3 s; remove its files."""
        for name in (WORKER, HEAD):
            if name in self.nodes:
                self._stop_node(self.nodes.pop(name))
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _stop_node(node: Node) -> None:
        procs = node.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=3)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        if node.process.poll() is None:
            node.process.kill()
        node.process.wait(timeout=5)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
