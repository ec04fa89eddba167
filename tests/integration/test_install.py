"""lvmae as a user installs it: the wheel holds one namespace, `lvmae`, with its shipped files, and the
installed package works from an empty folder outside the checkout (the checkout not on sys.path)."""

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import tomllib

from lvmae.foundation.files import sha256_file

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache")
SHIPPED = [
    "lvmae/toyworld/weights/toyclip.pt",
    "lvmae/toyworld/weights/toyclip.provenance.json",
    "lvmae/toyworld/weights/tokenizer.pt",
    "lvmae/toyworld/weights/tokenizer.provenance.json",
    "lvmae/toyworld/model_configs/toyclip.json",
    *(f"lvmae/pretrain/presets/{name}.yaml" for name in ("tiny", "small", "base", "large")),
    *(f"lvmae/static/{name}" for name in ("index.html", "app.js", "lvmae.css", "serve.css")),
]


def run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`pip wheel --no-deps` of a copy of the checkout (a build in the checkout would reuse its build/)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", source])
    (built,) = (tmp / "dist").glob("lvmae-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own (its dependencies are this environment's), and an
    environment that puts that folder, not the checkout, on sys.path."""
    site = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel])
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    return site, env


def test_the_wheel_holds_one_namespace_with_its_shipped_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"lvmae", wheel.name.split("-py3")[0] + ".dist-info"}
    assert [n for n in names if n.endswith(".py") and not n.startswith("lvmae/")] == []
    assert not [n for n in names if "/bench/" in f"/{n}" or "/tests/" in f"/{n}"]
    assert set(SHIPPED) <= set(names)
    # Every module of the repository's mapped folders is in the wheel, under the name it imports as.
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in folders.items():
        for path in (ROOT / folder).rglob("*.py"):
            inside = "/".join([*package.split("."), *path.relative_to(ROOT / folder).parts])
            assert inside in names, f"{path.relative_to(ROOT)} is not in the wheel as {inside}"


def test_the_installed_package_is_the_wheel_and_the_folders_are_not_modules(installed, tmp_path):
    site, env = installed
    code = (
        "import importlib.util, lvmae, lvmae.store\n"
        "print(lvmae.__file__)\n"
        "print([m for m in ('store', 'extract', 'pretrain', 'retrieval', 'foundation', 'toyworld', 'bench')"
        " if importlib.util.find_spec(m)])"
    )
    out = run([sys.executable, "-c", code], cwd=tmp_path, env=env).stdout.splitlines()
    assert out[0] == str(site / "lvmae" / "__init__.py")
    assert out[1] == "[]"


def test_config_show_from_an_empty_folder_names_shipped_files_that_exist(installed, tmp_path):
    site, env = installed
    shown = json.loads(run([site / "bin" / "lvmae", "config", "show", "--json"], cwd=tmp_path, env=env).stdout)
    files = [shown["encoder"]["pretrained"], shown["tokenizer"]["checkpoint"], *shown["encoder"]["model_configs"]]
    for file in files:
        assert Path(file).exists() and Path(file).is_relative_to(site), file


def test_a_tiny_demo_from_an_empty_folder_loads_the_shipped_weights_and_fits_nothing(
    installed, tmp_path, demo_overrides
):
    site, env = installed
    weights = site / "lvmae" / "toyworld" / "weights"
    before = {p.name: sha256_file(p) for p in weights.iterdir()}
    # The tiny demo of the other tests, with the shipped weights the installed package names by default.
    shipped = [o for o in demo_overrides if not o.startswith(("encoder.pretrained=", "tokenizer.checkpoint="))]
    argv = [site / "bin" / "lvmae", "demo", "--out", "out"]
    for override in shipped:
        argv += ["--set", override]
    started = time.perf_counter()
    done = run(argv, cwd=tmp_path, env=env)
    print(f"tiny demo from an empty folder: {time.perf_counter() - started:.1f} s")
    stages = tmp_path / "out" / "stages"
    encoder = json.loads((stages / "encoder.json").read_text())["result"]
    tokenizer = json.loads((stages / "tokenizer.json").read_text())["result"]
    assert encoder["encoder weights"] == str(weights / "toyclip.pt")
    assert tokenizer["tokenizer weights"] == str(weights / "tokenizer.pt")
    assert "fitted" in encoder and "fitted" in tokenizer  # the shipped files' provenance, read back
    assert "fitting" not in done.stdout.lower()
    assert {p.name: sha256_file(p) for p in weights.iterdir()} == before  # nothing written, nothing refitted
    assert (tmp_path / "out" / "report.html").is_file()
