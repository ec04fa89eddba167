"""The frozen image-text encoder: any open_clip model, by name plus a pretrained tag or a checkpoint file.

Shape legend: `N` frames or texts, `G` segments, `F` frames per segment, `H`/`W` pixels, `D` embedding.

Preprocessing is open_clip's own transform. Frames that already have the model's input size (the
decoder resizes and crops on the worker, in FFmpeg) take a batched tensor path that does exactly
what that transform does to them — resize and crop are the identity at that size, then ToTensor
and Normalize — so embeddings equal `model.encode_image(preprocess(frame))`; frames of any other
size go through the transform itself, frame by frame.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvmae.foundation.files import sha256_file
from lvmae.foundation.loader import ConfigError
from lvmae.foundation.runtime import autocast, compute_dtype, resolve_device
from lvmae.foundation.schema import EncoderConfig

_registered: set[str] = set()


def register_model_configs(folders: Iterable[str | os.PathLike]) -> None:
    """Make the open_clip model configs (JSON) in `folders` model names open_clip knows, once each.
    Folders that do not exist are skipped: a model missing because of one is reported by name."""
    import open_clip

    for folder in map(str, folders):
        if folder not in _registered and Path(folder).is_dir():
            open_clip.add_model_config(folder)
            _registered.add(folder)


def check_model_name(model: str, folders: Iterable[str | os.PathLike]) -> None:
    """Register `folders`, then refuse a `model` open_clip does not know, naming the folders searched."""
    import open_clip

    folders = [Path(f) for f in folders]
    register_model_configs(folders)
    if model not in open_clip.list_models():
        searched = ", ".join(f"{f}{'' if f.is_dir() else ' (missing)'}" for f in folders) or "none"
        raise ConfigError(
            f"encoder.model: {model!r} is not an open_clip model name (e.g. ViT-B-32; see "
            f"open_clip.list_models()); extra model configs searched (encoder.model_configs): {searched}"
        )


def looks_like_a_file(pretrained: str) -> bool:
    return "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


def check_pretrained(model: str, pretrained: str | os.PathLike | None) -> None:
    """Refuse weights that cannot load, before anything is written: a checkpoint path that does not
    exist, or a tag open_clip does not know for `model` (the model's name is checked by
    `check_model_name`). No weights are loaded or downloaded here."""
    import open_clip

    if not pretrained or Path(pretrained).is_file():
        return
    pretrained = str(pretrained)
    if looks_like_a_file(pretrained):
        raise ConfigError(f"encoder.pretrained: checkpoint file {pretrained!r} does not exist")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        known = ", ".join(tags[:8]) + ("…" if len(tags) > 8 else "") if tags else "none: give a checkpoint file"
        raise ConfigError(
            f"encoder.pretrained: {pretrained!r} is neither a file nor a pretrained tag of {model} (tags: {known})"
        )


def encoder_image_size(cfg: EncoderConfig) -> int:
    """The encoder's input side, read from its open_clip config (no weights loaded)."""
    import open_clip

    check_model_name(cfg.model, cfg.model_configs)
    vision = open_clip.get_model_config(cfg.model)["vision_cfg"]
    size = vision.get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


@dataclass(frozen=True)
class EncoderIdentity:
    name: str  # open_clip model name
    pretrained: str  # the tag, or the checkpoint's file name
    weights_sha256: str  # sha256 of the checkpoint file, or of the tag for downloadable weights

    def to_dict(self) -> dict:
        return {"name": self.name, "pretrained": self.pretrained, "weights_sha256": self.weights_sha256}

    @staticmethod
    def of(model: str, pretrained: str | Path | None) -> EncoderIdentity:
        """Identity of `model` with a checkpoint file (hashed) or a pretrained tag (the tag hashed)."""
        if pretrained and Path(pretrained).is_file():
            return EncoderIdentity(model, Path(pretrained).name, sha256_file(pretrained))
        tag = str(pretrained) if pretrained else "random-init"
        return EncoderIdentity(model, tag, hashlib.sha256(f"open_clip:{model}:{tag}".encode()).hexdigest())


class ImageTextEncoder:
    """A frozen open_clip model: frames -> L2-normalised embeddings, texts -> L2-normalised embeddings."""

    def __init__(
        self,
        model: str,
        pretrained: str | Path | None,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 256,
        model_configs: Iterable[str | os.PathLike] = (),
        cast_weights: bool = False,
    ):
        """`cast_weights` stores the weights in the compute dtype instead of autocasting fp32 weights
        each call: on a CPU with native bf16, a single text query then reads half the bytes (a search
        query tower); extraction keeps fp32 weights."""
        import open_clip

        check_model_name(model, model_configs)  # extra configs (the toy world's stand-in) join open_clip's list
        self.device = resolve_device(device, "encoder.device")
        self.dtype = compute_dtype(precision, self.device)
        self.batch_size = batch_size
        pretrained = str(pretrained) if pretrained else None
        is_file = pretrained is not None and Path(pretrained).is_file()
        if pretrained and not is_file and looks_like_a_file(pretrained):
            raise FileNotFoundError(f"encoder.pretrained: checkpoint file {pretrained!r} does not exist")
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained)
        self.model = self.model.to(self.device).eval().requires_grad_(False)
        self._autocast = self.dtype  # fp32 weights, computed in dtype under autocast
        if cast_weights and self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
            self._autocast = torch.float32  # weights already in dtype: autocast would only add casts
        self.tokenizer = open_clip.get_tokenizer(model)
        self.identity = EncoderIdentity.of(model, pretrained)
        size = self.model.visual.image_size
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.dim = int(
            self.model.text_projection.shape[1]
            if getattr(self.model, "text_projection", None) is not None
            else self.encode_text(["x"]).shape[1]
        )
        normalize = next(t for t in self.preprocess.transforms if type(t).__name__ == "Normalize")
        self._mean = torch.tensor(normalize.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(normalize.std, dtype=torch.float32).view(1, 3, 1, 1)

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype the weights are stored in (fp32, or the compute dtype with cast_weights)."""
        return next(self.model.parameters()).dtype

    @classmethod
    def from_config(
        cls, cfg: EncoderConfig, *, precision: str | None = None, cast_weights: bool = False
    ) -> ImageTextEncoder:
        return cls(
            cfg.model,
            cfg.pretrained,
            device=cfg.device,
            precision=precision or cfg.precision,
            batch_size=cfg.batch_size,
            model_configs=cfg.model_configs,
            cast_weights=cast_weights,
        )

    # ---- images --------------------------------------------------------------------------------

    def _pixels(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, S, S) normalised float32, as open_clip's transform gives. A
        tensor (frames decoded on the GPU, `extract.nvdec`) stays on its device and must be S x S."""
        square = tuple(frames.shape[1:3]) == (self.image_size, self.image_size)
        if isinstance(frames, torch.Tensor) and not square:
            raise ValueError(f"frames of {tuple(frames.shape[1:3])}: the encoder takes {self.image_size} squares")
        if square:
            x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
            x = x.permute(0, 3, 1, 2).float().div(255)
            return (x - self._mean.to(x.device)) / self._std.to(x.device)
        from PIL import Image

        return torch.stack([self.preprocess(Image.fromarray(f)) for f in frames])

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, D) float32, L2-normalised."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            x = self._pixels(frames[start : start + self.batch_size]).to(self.device, self.weights_dtype)
            with autocast(self.device, self._autocast):
                emb = self.model.encode_image(x)
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat(out).numpy()

    def encode_segments(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """(G, F, H, W, 3) uint8 (an array, or a tensor on any device) -> (G, D): the mean of each
        segment's normalised frame embeddings, normalised again."""
        G, Fr = frames.shape[:2]
        emb = self.encode_frames(frames.reshape(G * Fr, *frames.shape[2:])).reshape(G, Fr, -1)
        mean = emb.mean(axis=1)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    # ---- text ----------------------------------------------------------------------------------

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """`model.encode_text(tokens)`, over the tokens up to the last end-of-text of the batch only.

        A CLIP text tower is causal and pools at the end-of-text token (the highest id, `argmax`), so
        the padding after it changes nothing it returns: a query of 8 tokens need not run 77. The
        result equals encode_text's; other text towers (HF, non-causal, other pooling) run it whole.
        """
        import open_clip

        m = self.model
        if not (
            type(m) is open_clip.CLIP and getattr(m, "attn_mask", None) is not None and m.text_pool_type == "argmax"
        ):
            return m.encode_text(tokens)
        L = int(tokens.argmax(dim=-1).max()) + 1  # end-of-text of the longest text
        tokens = tokens[:, :L]  # (N, L)
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:L].to(cast)  # (N, L, width)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:L, :L]))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # (N, width) at end-of-text
        if m.text_projection is None:
            return x
        return m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection

    @property
    def context_length(self) -> int | None:
        """Tokens the text tower reads (start and end tokens included); longer texts are cut to it."""
        return getattr(self.tokenizer, "context_length", None)

    def token_count(self, text: str) -> int | None:
        """Tokens of `text` before any cut, start and end tokens included (None: the tokenizer cannot say)."""
        encode = getattr(self.tokenizer, "encode", None)
        return None if encode is None else len(encode(text)) + 2

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, context) token ids, on the CPU. Byte-pair encoding costs CPU time that grows with
        a text's length and holds no model: a server runs it outside its model lock."""
        return self.tokenizer(list(texts))

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """(N, context) token ids -> (N, D) float32, L2-normalised."""
        out = []
        for start in range(0, len(tokens), self.batch_size):
            with autocast(self.device, self._autocast):
                emb = self._text_features(tokens[start : start + self.batch_size].to(self.device))
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out).numpy()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, D) float32, L2-normalised."""
        return self.encode_tokens(self.tokenize(texts))
