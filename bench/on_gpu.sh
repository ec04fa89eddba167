#!/usr/bin/env bash
# The GPU checks in one go, for a CUDA machine with a Python that already holds torch (no .venv there):
#   bash bench/on_gpu.sh OUTDIR [SITE]
# SITE (optional) is a folder of the other dependencies, put first on PYTHONPATH. Runs the full
# extraction benchmark, the quick decode benchmark (its `gpu` key: NVDEC, on 8 s videos; the issue's
# figure needs the full run's 2-minute ones), the GPU tests, then the quick encoder and pretraining
# benchmarks; each step has
# its own time limit and a failing step does not stop the next. Logs and JSON go to OUTDIR. On a lent
# H200 node the first three took 133, 56 and 24 s; bench.pretrain starts a fresh process per
# configuration (about 20 s each there), so even --quick needs more than 185 s.
set -u
out=${1:?usage: bench/on_gpu.sh OUTDIR [SITE]}
mkdir -p "$out"
export PYTHONPATH="${2:+$2:}$PWD" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc, $((SECONDS - t0)) s"
    tail -n 4 "$out/$name.log" | cut -c1-600
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import torch, ray, av, open_clip, zarr; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__)"
step extract 300 "$py" -m bench.extract --out "$out/extract.json"
step decode 240 "$py" -m bench.decode --quick --out "$out/decode.json"
step gpu-tests 120 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/integration/test_gpu.py
step encoders 60 "$py" -m bench.encoders --quick --out "$out/encoders.json"
step pretrain 300 "$py" -m bench.pretrain --quick --out "$out/pretrain.json"
