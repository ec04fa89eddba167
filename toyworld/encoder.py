"""The stand-in image-text encoder: an open_clip model fitted contrastively on toy-world frames.

The architecture is a small open_clip config (`model_configs/toyclip.json`: a ModifiedResNet
image tower — a conv stem, which finds shapes far sooner than 8 px ViT patches — and a 2-layer
text transformer) registered with open_clip, so `open_clip.create_model_and_transforms("toyclip",
pretrained=<file>)` loads the fitted weights exactly like a real pretrained checkpoint.

Fitting draws fresh frames every step straight from the renderer. Each batch holds distinct
captions (a permutation of the caption bank), so no two images in a batch share a text and the
contrastive loss never pushes apart a matching pair. Frames pass through 4:2:0 chroma subsampling
and mild noise first, which is what h264 video gives the encoder at extraction time.

Accuracy is measured zero-shot, as a user would: frames decoded from a held-out corpus of another
seed, classified against the whole caption bank.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from lvmae.extract.encoder import register_model_configs as register_configs
from lvmae.foundation.files import atomic_write, sha256_file
from lvmae.foundation.loader import shipped
from lvmae.foundation.optim import decay_groups, warmup_cosine
from lvmae.foundation.progress import bar
from lvmae.foundation.provenance import read_provenance, write_provenance
from lvmae.foundation.schema import CorpusSpec, EncoderFitConfig
from lvmae.toyworld.world import MOTIONS, FrameParams, Layout, all_looks, caption_bank, motion_params, render

MODEL_NAME = "toyclip"
CONFIG_DIR = shipped("lvmae:toyworld/model_configs")
SHIPPED_WEIGHTS = shipped("lvmae:toyworld/weights/toyclip.pt")  # what encoder.pretrained names by default

LOOKS = all_looks()  # caption id -> Look, in caption-bank order

# open_clip's preprocessing normalisation (OPENAI_DATASET_MEAN / STD); at 64 px its resize and
# crop are the identity on our 64x64 frames, so training normalises tensors directly.
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


def register_model_configs() -> None:
    """Make `toyclip` (and any other JSON in model_configs/) a model name open_clip knows."""
    register_configs([CONFIG_DIR])


def world_fingerprint() -> str:
    """Hash of what the shipped weights depend on: the caption bank, renderer version, model config."""
    from lvmae.toyworld.generate import CORPUS_VERSION

    h = hashlib.sha256()
    h.update("\n".join(caption_bank()).encode())
    h.update(str(CORPUS_VERSION).encode())
    h.update((CONFIG_DIR / f"{MODEL_NAME}.json").read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Training frames
# --------------------------------------------------------------------------------------------


def sample_frames(rng: np.random.Generator, caption_ids: np.ndarray, size: int) -> np.ndarray:
    """One rendered frame per caption id, each with a random layout, motion and moment: (B, S, S, 3)."""
    params = []
    # Blink is left out: its hidden frames would contradict their caption; still covers its pose.
    motions = [m for m in MOTIONS if m != "blink"]
    for cid in caption_ids:
        look = LOOKS[cid]
        t = np.array([rng.uniform(0, 30)])
        params.append(motion_params(look, Layout.random(rng), str(rng.choice(motions)), t, size))
    stacked = FrameParams(*[np.concatenate([getattr(p, f) for p in params]) for f in FrameParams.__dataclass_fields__])
    frames, _ = render(stacked, size)
    return frames


def video_like(frames: np.ndarray, rng: np.random.Generator, noise: float = 2.0) -> np.ndarray:
    """What h264/yuv420p does to colour: chroma at half resolution; plus mild sensor-like noise."""
    x = frames.astype(np.float32)
    # BT.601 full-range RGB <-> YCbCr; chroma averaged over 2x2 blocks and repeated back.
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cb = -0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
    cr = 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    B, S, _ = y.shape

    def sub(c):
        c = c.reshape(B, S // 2, 2, S // 2, 2).mean(axis=(2, 4))
        return c.repeat(2, axis=1).repeat(2, axis=2)

    cb, cr = sub(cb), sub(cr)
    out = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    out += rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, normalised as open_clip's preprocess does."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------
# Held-out evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class HeldOut:
    frames: np.ndarray  # (N, S, S, 3) uint8, decoded from h264
    labels: np.ndarray  # (N,) index into the caption bank
    seed: int


def labelled_frames(corpus, n: int, seed: int, *, max_candidates: int | None = None) -> HeldOut:
    """`n` frames decoded from `corpus` (a toyworld.generate.Corpus), each labelled with the caption it
    truly shows; frames where a blinking object is hidden are skipped. Videos are read in a seeded
    random order until there are enough candidates, so a long corpus is not decoded whole."""
    from lvmae.toyworld.generate import render_frames, video_plan

    index = {c: i for i, c in enumerate(caption_bank())}
    spec = corpus.spec
    rng = np.random.default_rng(seed)
    rows = corpus.videos.to_pylist()
    enough = max_candidates or 4 * n
    frames, labels = [], []
    for row in (rows[i] for i in rng.permutation(len(rows))):
        plan = video_plan(spec, row["index"], row["n_frames"])
        with av.open(str(Path(corpus.root) / row["uri"])) as container:
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        idx = np.arange(len(decoded))
        _, masks = render_frames(plan, idx, spec.fps, spec.size)
        starts = np.array([s.t_start for s in plan])
        which = np.searchsorted(starts, idx / spec.fps, side="right") - 1
        for j in idx:
            step = plan[which[j]]
            if step.look.shape is not None and not masks[j].any():
                continue
            frames.append(decoded[j])
            labels.append(index[step.look.caption])
        if len(frames) >= enough:
            break
    pick = rng.choice(len(frames), size=min(n, len(frames)), replace=False)
    return HeldOut(np.stack(frames)[pick], np.array(labels)[pick], seed)


def heldout_frames(
    n: int = 1000, seed: int = 1000, size: int = 64, fps: float = 8.0, workdir: str | Path | None = None
) -> HeldOut:
    """`n` labelled frames decoded from a fresh corpus of seed `seed`: 24 one-minute videos (every
    procedure class twice, with their distractors), all decoded, frames drawn uniformly."""
    from lvmae.toyworld.generate import frame_counts, generate

    spec = CorpusSpec(videos=24, minutes=(1.0, 1.0), seed=seed, size=size, fps=fps)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        corpus = generate(spec, tmp, workers=1, progress=False)
        return labelled_frames(corpus, n, seed, max_candidates=sum(frame_counts(spec)))


def bank_frames(per_caption: int = 4, seed: int = 1001, size: int = 64) -> HeldOut:
    """Frames of every caption in the bank (`per_caption` random layouts and motions each), through
    a real h264 encode and decode: coverage of the whole bank, which procedure videos never give."""
    from lvmae.toyworld.generate import write_mp4

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(LOOKS)), per_caption)
    frames = sample_frames(rng, labels, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bank.mp4"
        write_mp4(path, iter([frames]), size, 8.0)
        with av.open(str(path)) as container:
            decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return HeldOut(decoded, labels, seed)


@torch.no_grad()
def zero_shot(model, tokenizer, held: HeldOut, batch: int = 500) -> dict:
    """Top-1 of classifying each frame against the whole caption bank, plus per-attribute accuracy."""
    model.eval()
    bank = caption_bank()
    text = F.normalize(model.encode_text(tokenizer(bank)).float(), dim=-1)
    preds = []
    for start in range(0, len(held.frames), batch):
        img = F.normalize(model.encode_image(to_tensor(held.frames[start : start + batch])).float(), dim=-1)
        preds.append((img @ text.T).argmax(dim=-1).numpy())
    pred = np.concatenate(preds)
    truth_looks = [LOOKS[i] for i in held.labels]
    pred_looks = [LOOKS[i] for i in pred]

    def agree(attr):
        return float(np.mean([getattr(a, attr) == getattr(b, attr) for a, b in zip(truth_looks, pred_looks)]))

    return {
        "top1": float(np.mean(pred == held.labels)),
        "shape": agree("shape"),
        "colour": agree("colour"),
        "background": agree("background"),
        "frames": int(len(pred)),
    }


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    weights: Path
    provenance: dict
    losses: list[float] = field(default_factory=list)


def create_model(pretrained: str | Path | None = None):
    """(model, preprocess, tokenizer) for toyclip through open_clip's own factory."""
    import open_clip

    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL_NAME, pretrained=str(pretrained) if pretrained else None
    )
    return model, preprocess, open_clip.get_tokenizer(MODEL_NAME)


def fit_encoder(
    out: str | Path, settings: EncoderFitConfig = EncoderFitConfig(), *, command: str = "", progress: bool | None = None
) -> FitResult:
    """Fit toyclip from scratch, evaluate it zero-shot on held-out frames, save fp16 weights + provenance."""
    out = Path(out)
    bank_size = len(caption_bank())
    if settings.batch_size > bank_size:  # a batch holds distinct captions
        raise ValueError(
            f"toyworld.fit.batch_size: {settings.batch_size} is more than the caption bank's {bank_size} captions"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model, _, tokenizer = create_model()
    bank = caption_bank()
    text_tokens = tokenizer(bank)
    # Norms, biases, embeddings and the temperature are not decayed (CLIP's recipe).
    opt = torch.optim.AdamW(decay_groups(model, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        return settings.lr * warmup_cosine(step, warmup=settings.warmup, steps=settings.steps)

    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    steps_done = 0
    with bar(
        total=settings.steps, desc="fit toyclip", unit="step", disable=None if progress is None else not progress
    ) as pbar:
        for step in range(settings.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            ids = rng.permutation(len(bank))[: settings.batch_size]
            images = to_tensor(video_like(sample_frames(rng, ids, settings.size), rng))
            img = F.normalize(model.encode_image(images), dim=-1)
            txt = F.normalize(model.encode_text(text_tokens[ids]), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.T
            target = torch.arange(len(ids))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
            losses.append(loss.item())
            steps_done = step + 1
            pbar.update(1)
            if step % 20 == 0:
                pbar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", img_s=f"{pbar.format_dict['rate'] or 0:.1f}")
            if settings.max_minutes and time.perf_counter() - started > settings.max_minutes * 60:
                break
    fit_seconds = time.perf_counter() - started

    held = heldout_frames(settings.eval_frames, settings.eval_seed, settings.size)
    scores = zero_shot(model, tokenizer, held)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    atomic_write(out, lambda f: torch.save(state, f))
    import open_clip

    provenance = {
        "model": MODEL_NAME,
        "file": out.name,
        "sha256": sha256_file(out),
        "command": command,
        "settings": asdict(settings),
        "steps_done": steps_done,
        "fit_seconds": round(fit_seconds, 1),
        "zero_shot_fp32": scores,
        "world_fingerprint": world_fingerprint(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"open_clip {open_clip.__version__}",
        "final_loss": float(np.mean(losses[-50:])),
    }
    write_provenance(out, provenance)
    # Accuracy of the file as shipped (fp16, reloaded through open_clip) goes in by the same code
    # that `lvmae toyworld eval-encoder --record` runs.
    provenance = record_evaluation(out, held, seed=settings.eval_seed, size=settings.size)
    return FitResult(out, provenance, losses)


def record_evaluation(
    weights: Path, held: HeldOut | None = None, *, seed: int = 1000, frames: int = 1000, size: int = 64
) -> dict:
    """Evaluate `weights` zero-shot (held-out video frames, and every caption of the bank) and write
    the figures into its provenance file. Returns the updated provenance."""
    model, _, tokenizer = create_model(weights)
    held = held if held is not None else heldout_frames(frames, seed, size)
    provenance = read_provenance(weights) or {"file": Path(weights).name}
    if provenance.get("sha256") not in (None, sha256_file(weights)):
        raise ValueError(f"{weights}: its provenance describes another file (sha256 differs); refit it")
    provenance["zero_shot"] = {**zero_shot(model, tokenizer, held), "seed": held.seed}
    bank = bank_frames(seed=seed + 1, size=size)
    provenance["zero_shot_whole_bank"] = {**zero_shot(model, tokenizer, bank), "seed": bank.seed}
    return write_provenance(weights, provenance)
