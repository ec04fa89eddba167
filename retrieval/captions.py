"""The text side of retrieval: the store's own text tower, and the caption bank.

Shape letters: `C` captions, `n` vectors asked about, `D` embedding width.

Text and segments meet only in the space of the encoder that embedded the segments, so a query is
encoded with exactly that encoder (the same open_clip model and weights as the store's identity,
loaded through `extract.encoder.ImageTextEncoder`). A store of LV-MAE features (`lvmae
embed-sequences`) holds the pretrained model's own representation, which no text tower shares: text
queries on it are refused with the reason, and query by example still works.

The caption bank is a captions file (one a line; the toy world writes `captions.txt`) encoded once with
that text tower and kept as a small Flat index beside its texts. It is cached by (encoder identity,
file hash) in a folder of `captions-<key>.faiss` + `captions-<key>.json` (written last), so a search
process encodes a bank only the first time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvmae.extract.encoder import EncoderIdentity, ImageTextEncoder
from lvmae.foundation.files import atomic_write_json, sha256_file
from lvmae.foundation.runtime import native_bf16, resolve_device
from lvmae.foundation.schema import EncoderConfig
from lvmae.pretrain.features import is_features_identity
from lvmae.retrieval.errors import NotTextAligned, RetrievalError
from lvmae.retrieval.index import normalized, write_faiss


def describe_encoder(encoder: dict) -> str:
    return f"{encoder.get('name')} ({encoder.get('pretrained', '?')}, weights sha256 {str(encoder.get('weights_sha256'))[:12]}…)"


def text_refusal(store_uri: str, identity: dict) -> NotTextAligned | None:
    """Why text cannot query the store with this identity (`StoreIdentity.to_attrs()`), or None."""
    encoder = identity["encoder"]
    if not is_features_identity(encoder):
        return None
    source = encoder.get("input_encoder", {})
    return NotTextAligned(
        f"store {store_uri} holds LV-MAE features ({encoder['name']}, from a store of the "
        f"{source.get('name', '?')} encoder): the pretrained model's own representation, which is not in "
        "any text encoder's embedding space, so text cannot query it. Search text on an index of the "
        "frozen encoder's store (the one `lvmae embed-sequences` read), or query by example here with "
        "--like VIDEO_ID@SECONDS."
    )


def check_encoder_matches(store_uri: str, identity: dict, cfg: EncoderConfig) -> None:
    """Refuse a text encoder other than the one that embedded the store's segments."""
    refusal = text_refusal(store_uri, identity)
    if refusal is not None:
        raise refusal
    mine = EncoderIdentity.of(cfg.model, cfg.pretrained).to_dict()
    stored = identity["encoder"]
    if {k: stored.get(k) for k in mine} != mine:
        raise RetrievalError(
            f"store {store_uri} was embedded by encoder {describe_encoder(stored)}, but the config's encoder is "
            f"{describe_encoder(mine)}: text from another encoder is not in the store's space. Set "
            "encoder.model and encoder.pretrained (--set encoder.pretrained=FILE) to the store's."
        )


def query_precision(setting: str, device: str) -> str:
    """retrieval.text_precision -> "fp32" or "bf16" for the query text tower on `device`."""
    if setting != "auto":
        return setting
    return "bf16" if native_bf16(resolve_device(device, "encoder.device")) else "fp32"


def text_encoder_for(
    store_uri: str, identity: dict, cfg: EncoderConfig, *, precision: str = "fp32"
) -> ImageTextEncoder:
    """The store's own text tower, loaded from the config's encoder once it is checked to be the store's,
    with its weights in `precision` (`query_precision`)."""
    check_encoder_matches(store_uri, identity, cfg)
    return ImageTextEncoder.from_config(cfg, precision=precision, cast_weights=True)


@dataclass
class CaptionBank:
    """Captions and their L2-normalised embeddings under one encoder, searchable by cosine."""

    texts: list[str]
    vectors: np.ndarray  # (C, D) float32
    encoder: dict  # the identity of the encoder that embedded them
    source: str  # the captions file
    sha256: str  # of the captions file

    def __post_init__(self):
        import faiss

        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(np.ascontiguousarray(self.vectors, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.texts)

    def check_store(self, store_uri: str, identity: dict) -> None:
        """Refuse a store whose segments another encoder embedded: its vectors and these captions
        would be in different spaces."""
        refusal = text_refusal(store_uri, identity)
        if refusal is not None:
            raise refusal
        if identity["encoder"] != self.encoder:
            raise RetrievalError(
                f"caption bank {self.source} was encoded by {describe_encoder(self.encoder)}, but store "
                f"{store_uri} was embedded by {describe_encoder(identity['encoder'])}: encode the bank with "
                "the store's encoder"
            )

    def best(self, vectors: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(n, D) -> (n, k) cosine scores and caption indices, best first."""
        if vectors.shape[1] != self.vectors.shape[1]:
            raise RetrievalError(
                f"caption bank {self.source} has width {self.vectors.shape[1]}; vectors of width {vectors.shape[1]} asked"
            )
        return self.index.search(normalized(vectors), min(k, len(self)))

    def caption_of(self, vectors: np.ndarray) -> list[str]:
        """The best caption for each of (n, D) vectors."""
        if not len(vectors):
            return []
        return [self.texts[i] for i in self.best(vectors, 1)[1][:, 0]]

    @classmethod
    def load(
        cls, path: str | os.PathLike, encoder: ImageTextEncoder, *, cache_dir: str | os.PathLike | None = None
    ) -> CaptionBank:
        """The bank of the captions file `path` under `encoder`, from `cache_dir` when it was encoded
        before with this encoder and this file, else encoded now (and cached when `cache_dir` is given)."""
        path = Path(path)
        if not path.is_file():
            raise RetrievalError(
                f"caption bank {path}: no such file (retrieval.captions; one caption a line, e.g. a toy world's captions.txt)"
            )
        sha = sha256_file(path)
        identity = encoder.identity.to_dict()
        dtype = str(encoder.weights_dtype)  # a bf16 tower's bank differs in the 4th digit
        key = json.dumps({"encoder": identity, "file": sha, "weights": dtype}, sort_keys=True)
        key = hashlib.sha256(key.encode()).hexdigest()[:16]
        if cache_dir is not None:
            cached = _read_cached(Path(cache_dir), key, identity, sha)
            if cached is not None:
                texts, vectors = cached
                return cls(texts, vectors, identity, str(path), sha)
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise RetrievalError(f"caption bank {path} has no captions (one a line)")
        vectors = encoder.encode_text(texts).astype(np.float32)
        bank = cls(texts, vectors, identity, str(path), sha)
        if cache_dir is not None:
            bank._write_cache(Path(cache_dir), key)
        return bank

    def _write_cache(self, folder: Path, key: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_faiss(self.index, folder / f"captions-{key}.faiss")
        atomic_write_json(
            folder / f"captions-{key}.json",
            {"encoder": self.encoder, "source": self.source, "sha256": self.sha256, "texts": self.texts},
        )


def _read_cached(folder: Path, key: str, encoder: dict, sha: str) -> tuple[list[str], np.ndarray] | None:
    """(texts, vectors) of a cached bank, or None when absent or not this one (then it is encoded again)."""
    meta_path, index_path = folder / f"captions-{key}.json", folder / f"captions-{key}.faiss"
    if not (meta_path.is_file() and index_path.is_file()):
        return None
    import faiss

    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        index = faiss.read_index(str(index_path))
    except (OSError, ValueError, RuntimeError):
        return None
    if meta.get("encoder") != encoder or meta.get("sha256") != sha or index.ntotal != len(meta.get("texts", ())):
        return None
    return list(meta["texts"]), index.reconstruct_n(0, index.ntotal)


def store_bank(
    path: str | os.PathLike,
    store_uri: str,
    identity: dict,
    cfg: EncoderConfig,
    *,
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
) -> CaptionBank:
    """The caption bank of `path` in the space of the store with `identity`: encoded (or read from
    `cache_dir`) with the store's own text tower, refused for a store no text tower shares."""
    bank = CaptionBank.load(path, text_encoder_for(store_uri, identity, cfg, precision=precision), cache_dir=cache_dir)
    bank.check_store(store_uri, identity)
    return bank
