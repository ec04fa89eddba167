"""LV-MAE training step time and memory against window length, decoder masking all vs adaptive.

Small preset, batch 1, D=512 inputs, encoder mask ratios 0.5 and 0.75, decoder masking `all` (every
hidden segment) and `adaptive` (kappa 0.15: the top 15 % of hidden segments by importance). Each
configuration runs in a fresh process, so its memory figures are its own.

What is measured, per window length, ratio and decoder mode:
- `step_s`: one full training step (forward, backward, AdamW), median of the timed steps after one
  untimed warm-up step.
- `peak_mem_gib`: memory the training takes. CPU: the process's peak resident set (ru_maxrss) minus its
  resident set just before the model is built (after torch is imported and the inputs exist): model,
  optimizer state, activations, allocator slack. GPU: torch.cuda.max_memory_allocated.
- `decoder_step_s`: the decoder half alone (decoder forward from the encoder's output, loss, backward),
  median of as many timed runs as `step_s`: what decoder masking changes.
- `decoder_saved_gib`: bytes of the distinct tensor storages the decoder half saves for backward,
  counted with torch.autograd.graph.saved_tensors_hooks: its activation memory, exact and free of
  allocator noise. GPU adds `decoder_peak_gib` (max_memory_allocated during the decoder half, above what
  was allocated before it).

The 4096-segment ratios compare `all` with `adaptive`: decoder_speedup = decoder_step_s ratio,
decoder_memory_ratio = decoder_saved_gib ratio.

Every configuration runs the same number of steps (one warm-up, then the timed ones), because the
resident set keeps growing for a few steps as the allocator fragments (at 4096 segments: 0.49 GiB after
one step, 0.59 after three, 0.60 after seven), so peaks are only comparable at equal step counts.

Longest window within 8 GiB, per decoder mode at ratio 0.5. GPU: windows are doubled, each trained for
real, until one goes over. CPU: a step at 32k segments takes many minutes here, so the figure comes from
the measured peaks: memory grows linearly with the window (attention through SDPA's flash kernel keeps
no T×T matrix), so a line through the peaks of the two longest measured windows (16384, a memory probe
of the full run, and 8192) is solved for 8 GiB and rounded down to a multiple of 256.
`max_window_method` says which.

Threads: one torch thread on CPU by default (`--threads`). On this shared 2-core machine, with another
job's load, two OpenMP threads made a 4096-segment step about 3 times slower, not faster.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from bench._common import emit, machine, parse_args

D = 512
KAPPA = 0.15
PRESET = "small"
LENGTHS = (256, 1024, 4096, 8192)
RATIOS = (0.5, 0.75)
MODES = ("all", "adaptive")
BUDGET_GIB = 8.0
GIB = 2**30


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(length: int, ratio: float, mode: str, reps: int, threads: int, decoder: bool = True) -> dict[str, Any]:
    """One configuration, in this process (the parent runs each in a fresh child)."""
    import torch

    from lvmae.foundation.runtime import autocast as runtime_autocast
    from lvmae.pretrain.masking import decoder_adaptive, decoder_all, random_mask
    from lvmae.pretrain.model import LVMAE, gather_index, take
    from lvmae.pretrain.presets import model_config

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(1, length, D, generator=g), dim=-1).to(device)  # (1, T, D)
    valid = torch.ones(1, length, dtype=torch.bool, device=device)
    importance = torch.rand(1, length, generator=g).to(device)
    hidden = random_mask(valid, ratio, generator=g)
    selected = decoder_all(hidden) if mode == "all" else decoder_adaptive(hidden, importance, KAPPA)
    rss0 = _rss_bytes()

    torch.manual_seed(0)
    model = LVMAE(model_config(PRESET, dim_in=D)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = runtime_autocast(device)  # bf16 on GPU, off on CPU

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, n: int, warm_up: bool = True) -> float:
        if warm_up:
            fn()  # allocator, kernels, AdamW state
        times = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times) if times else 0.0

    def train_step() -> None:
        with autocast:
            out = model(emb, valid, hidden, selected)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    step_s = timed(train_step, reps)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0  # ru_maxrss is KiB on Linux
    result = {
        "length": length,
        "ratio": ratio,
        "mode": mode,
        "step_s": round(step_s, 4) if reps else None,
        "peak_mem_gib": round(peak / GIB, 4),
        "visible": int((valid & ~hidden).sum()),
        "selected": int(selected.sum()),
    }
    if not decoder:
        return result

    vis_idx, vis_keep = gather_index(valid & ~hidden)
    sel_idx, sel_keep = gather_index(selected)
    with torch.no_grad(), autocast:
        latent = model.encode(take(emb, vis_idx), vis_keep, vis_idx)
    latent = latent.detach().requires_grad_(True)

    def decoder_step() -> None:
        with autocast:
            out = model.decode(latent, vis_idx, vis_keep, sel_idx, sel_keep, emb)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        latent.grad = None

    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()  # a storage saved twice counts once
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        model.decode(latent, vis_idx, vis_keep, sel_idx, sel_keep, emb)
    result["decoder_saved_gib"] = round(sum(storages.values()) / GIB, 5)
    result["decoder_tokens"] = int(vis_keep.sum() + sel_keep.sum())
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        decoder_step()
        torch.cuda.synchronize()
        result["decoder_peak_gib"] = round((torch.cuda.max_memory_allocated() - base) / GIB, 5)
    # The full steps above and the counting pass warmed the same kernels: no extra warm-up step.
    result["decoder_step_s"] = round(timed(decoder_step, reps, warm_up=False), 4)
    return result


def run_child(length: int, ratio: float, mode: str, reps: int, threads: int, decoder: bool = True) -> dict[str, Any]:
    """`measure` in a fresh process; an out-of-memory child comes back as {"failed": reason}."""
    spec = json.dumps(
        {"length": length, "ratio": ratio, "mode": mode, "reps": reps, "threads": threads, "decoder": decoder}
    )
    proc = subprocess.run([sys.executable, "-m", "bench.pretrain", "--measure", spec], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return {"length": length, "ratio": ratio, "mode": mode, "failed": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_window_gpu(mode: str, threads: int) -> tuple[int, str]:
    length, best = 4096, 0  # shorter windows were measured already
    while length <= 1 << 20:
        r = run_child(length, 0.5, mode, 0, threads, decoder=False)
        if "failed" in r or r["peak_mem_gib"] > BUDGET_GIB:
            break
        best, length = length, length * 2
    return best, "measured: longest power-of-two window whose training step fits (GPU)"


def max_window_cpu(peaks: dict[int, float]) -> tuple[int, str]:
    """Largest measured window over budget stops the search; else extrapolate the line through the two
    longest measured windows."""
    lengths = sorted(peaks)
    over = [n for n in lengths if peaks[n] > BUDGET_GIB]
    if over:
        fits = [n for n in lengths if n < over[0]]
        return (fits[-1] if fits else 0), f"measured: {over[0]} segments went over {BUDGET_GIB:g} GiB"
    a, b = lengths[-2], lengths[-1]
    per_segment = (peaks[b] - peaks[a]) / (b - a)
    window = b + (BUDGET_GIB - peaks[b]) / per_segment
    return int(window // 256 * 256), (
        f"extrapolated: linear through measured peaks at {a} and {b} segments "
        f"({per_segment * 1024 * 1024:.0f} MiB per 1k segments)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure(**json.loads(argv[1]))), flush=True)
        return 0
    threads = 1
    if "--threads" in argv:
        i = argv.index("--threads")
        threads = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    args = parse_args(__doc__.splitlines()[0], argv)
    import torch

    cuda = torch.cuda.is_available()
    lengths = (256, 4096) if args.quick else LENGTHS
    reps = 1 if args.quick else 2
    began = time.perf_counter()
    print(
        f"pretrain benchmark: preset {PRESET}, D={D}, batch 1, kappa {KAPPA}, lengths {lengths}, ratios {RATIOS}, "
        f"{'cuda' if cuda else f'cpu, {threads} thread(s)'}",
        flush=True,
    )
    by_length: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for length in lengths:
        for ratio in RATIOS:
            for mode in MODES:
                r = run_child(length, ratio, mode, reps, threads)
                by_length.setdefault(str(length), {}).setdefault(f"r{ratio:g}", {})[mode] = {
                    k: v for k, v in r.items() if k not in ("length", "ratio", "mode")
                }
                shown = r.get("failed") or (
                    f"step {r['step_s']:.3f} s, peak {r['peak_mem_gib']:.2f} GiB, decoder "
                    f"{r['decoder_step_s']:.3f} s, saved {r['decoder_saved_gib']:.3f} GiB"
                )
                print(f"  T={length:5d} r={ratio:g} {mode:8s} {shown}", flush=True)

    def at(length: int, ratio: float, mode: str, key: str) -> float:
        return by_length[str(length)][f"r{ratio:g}"][mode][key]

    ratios = {}
    for ratio, suffix in ((0.5, ""), (0.75, "_r75")):
        ratios[f"decoder_speedup_4096{suffix}"] = round(
            at(4096, ratio, "all", "decoder_step_s") / at(4096, ratio, "adaptive", "decoder_step_s"), 2
        )
        ratios[f"decoder_memory_ratio_4096{suffix}"] = round(
            at(4096, ratio, "all", "decoder_saved_gib") / at(4096, ratio, "adaptive", "decoder_saved_gib"), 2
        )
        ratios[f"step_speedup_4096{suffix}"] = round(
            at(4096, ratio, "all", "step_s") / at(4096, ratio, "adaptive", "step_s"), 2
        )

    windows, methods, probes = {}, {}, {}
    for mode in MODES:
        if cuda:
            windows[mode], methods[mode] = max_window_gpu(mode, threads)
            continue
        peaks = {n: at(n, 0.5, mode, "peak_mem_gib") for n in lengths}
        if not args.quick:  # one longer window for the line, as many steps as the others (see note above)
            probe = run_child(16384, 0.5, mode, reps, threads, decoder=False)
            if "failed" not in probe:
                peaks[16384] = probe["peak_mem_gib"]
                probes[mode] = {k: v for k, v in probe.items() if k not in ("length", "ratio", "mode")}
                print(
                    f"  T=16384 r=0.5 {mode:8s} step {probe['step_s']:.3f} s, peak {probe['peak_mem_gib']:.2f} GiB "
                    "(memory probe, no decoder timing)",
                    flush=True,
                )
        windows[mode], methods[mode] = max_window_cpu(peaks)

    result = {
        "by_length": by_length,
        **ratios,
        "peak_mem_gib_4096_small_batch1": max(at(4096, r, m, "peak_mem_gib") for r in RATIOS for m in MODES),
        "max_window_all_8gib": windows["all"],
        "max_window_adaptive_8gib": windows["adaptive"],
        "max_window_method": methods,
        "memory_probe_16384_r0.5": probes,
        "preset": PRESET,
        "D": D,
        "batch": 1,
        "kappa": KAPPA,
        "device": "cuda" if cuda else "cpu",
        "threads": None if cuda else threads,
        "timed_steps": reps,
        "quick": args.quick,
        "seconds": round(time.perf_counter() - began, 1),
        **machine(),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
