"""Toy-world benchmark: render+encode rate, stand-in encoder fit time and zero-shot accuracy.

    python -m bench.toyworld [--quick] [--refit] [--out FILE]

`render_video_s_per_s`: video-seconds rendered and h264-encoded per wall-second (one hour of
default 64x64 8 fps video; 5 minutes with --quick). `zero_shot_top1`: the shipped weights on 1,000
frames decoded from a held-out corpus (another seed; 300 with --quick). `fit_seconds`: the shipped
weights' recorded fit time, or a fresh fit's with --refit.
"""

from __future__ import annotations

import sys
import tempfile
import time

from bench._common import emit, machine, parse_args
from lvmae.foundation.provenance import read_provenance
from lvmae.foundation.schema import CorpusSpec, EncoderFitConfig
from lvmae.toyworld.encoder import SHIPPED_WEIGHTS, create_model, fit_encoder, heldout_frames, zero_shot
from lvmae.toyworld.generate import generate


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(
        __doc__.split("\n\n")[0],
        argv,
        extra=lambda p: p.add_argument(
            "--refit", action="store_true", help="fit the encoder afresh and time it (about 15 min)"
        ),
    )

    minutes = 5.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        spec = CorpusSpec(videos=2, minutes=(minutes / 2, minutes / 2), seed=123)
        started = time.perf_counter()
        corpus = generate(spec, tmp, progress=False)
        render_seconds = time.perf_counter() - started
    print(f"rendered+encoded {corpus.video_seconds:.0f} video-s in {render_seconds:.1f} s", flush=True)

    weights, fit_source = SHIPPED_WEIGHTS, "shipped provenance"
    if args.refit:
        with tempfile.TemporaryDirectory() as tmp:
            result = fit_encoder(f"{tmp}/toyclip.pt", EncoderFitConfig(eval_frames=300 if args.quick else 1000))
            fit_seconds, top1 = result.provenance["fit_seconds"], result.provenance["zero_shot"]["top1"]
            fit_source = "this run"
    else:
        provenance = read_provenance(weights)
        if provenance is None:
            sys.exit(f"no provenance beside {weights}: fit the stand-in encoder first (lvmae toyworld fit-encoder)")
        fit_seconds = provenance["fit_seconds"]
        model, _, tokenizer = create_model(weights)
        top1 = zero_shot(model, tokenizer, heldout_frames(300 if args.quick else 1000, seed=2000))["top1"]
    result = {
        "render_video_s_per_s": round(corpus.video_seconds / render_seconds, 1),
        "fit_seconds": fit_seconds,
        "zero_shot_top1": round(top1, 4),
        "render_video_seconds": corpus.video_seconds,
        "fit_source": fit_source,
        "quick": args.quick,
        **machine(),
    }
    emit(result, args.out)
    return result


if __name__ == "__main__":
    main()
