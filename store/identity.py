"""What a store's features were made with: encoder, tokenizer, segment spec, schema version.

Every shard of a store must come from the same identity, or sequences would mix embeddings from two
models. The identity lives in the root group's attributes; writers compare theirs with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lvmae.store.layout import ROOT_ATTR, SCHEMA_VERSION, StoreError

REQUIRED_MODEL_KEYS = ("name", "weights_sha256")


def _plain(value: Any, what: str) -> Any:
    """The JSON form of `value` (tuples become lists), so that identities compare as stored."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"store identity: {what} must be JSON data (dicts, lists, str, numbers): {exc}") from None


def _check_model(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise StoreError(
            f"store identity: {what} must be a dict with {', '.join(REQUIRED_MODEL_KEYS)}; got {type(value).__name__}"
        )
    missing = [key for key in REQUIRED_MODEL_KEYS if key not in value]
    if missing:
        raise StoreError(
            f"store identity: {what} lacks {', '.join(missing)} (has {', '.join(sorted(value)) or 'nothing'})"
        )
    return _plain(dict(value), what)


@dataclass(frozen=True)
class StoreIdentity:
    """Encoder and tokenizer (each at least `name` and `weights_sha256`), the segment spec, and the
    store schema version (set by this library; stores of another version are refused)."""

    encoder: dict[str, Any]
    tokenizer: dict[str, Any] | None
    segment: dict[str, Any]
    schema_version: int = field(default=SCHEMA_VERSION, init=False)

    def __post_init__(self):
        # Frozen, so normalising goes through object.__setattr__; after this, fields hold JSON data.
        object.__setattr__(self, "encoder", _check_model(self.encoder, "encoder"))
        if self.tokenizer is not None:
            object.__setattr__(self, "tokenizer", _check_model(self.tokenizer, "tokenizer"))
        if not isinstance(self.segment, Mapping) or "seconds" not in self.segment:
            raise StoreError(f"store identity: segment must be a dict with at least 'seconds'; got {self.segment!r}")
        object.__setattr__(self, "segment", _plain(dict(self.segment), "segment"))

    @property
    def has_tokenizer(self) -> bool:
        return self.tokenizer is not None

    def to_attrs(self) -> dict[str, Any]:
        """The root attribute value."""
        return {
            "schema_version": self.schema_version,
            "encoder": self.encoder,
            "tokenizer": self.tokenizer,
            "segment": self.segment,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str) -> StoreIdentity:
        """Read the root attributes of the store at `where`; a foreign or older store is a StoreError."""
        if ROOT_ATTR not in attrs:
            raise StoreError(f"{where} is a zarr group but not an lvmae store: no '{ROOT_ATTR}' root attribute")
        value = attrs[ROOT_ATTR]
        version = value.get("schema_version") if isinstance(value, Mapping) else None
        if version != SCHEMA_VERSION:
            raise StoreError(f"{where} has store schema version {version!r}; this lvmae reads version {SCHEMA_VERSION}")
        try:
            return cls(encoder=value["encoder"], tokenizer=value["tokenizer"], segment=value["segment"])
        except KeyError as exc:
            raise StoreError(f"{where}: root attribute '{ROOT_ATTR}' lacks {exc}") from None

    def describe(self) -> str:
        return json.dumps(self.to_attrs(), sort_keys=True)

    def differences(self, other: StoreIdentity) -> list[str]:
        """Dotted keys whose values differ, e.g. ['encoder.weights_sha256', 'segment.seconds']."""

        def walk(a: Any, b: Any, prefix: str) -> list[str]:
            if isinstance(a, dict) and isinstance(b, dict):
                return [
                    key
                    for k in sorted(set(a) | set(b))
                    for key in walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
                ]
            return [] if a == b else [prefix]

        return walk(self.to_attrs(), other.to_attrs(), "")


def mismatch_error(where: str, stored: StoreIdentity, given: StoreIdentity) -> StoreError:
    return StoreError(
        f"{where} was made with another identity (differs in {', '.join(stored.differences(given))}); "
        "refusing to mix features from different models or segment specs in one store.\n"
        f"  store has:  {stored.describe()}\n"
        f"  writer has: {given.describe()}\n"
        "Write to a new store, or extract with the encoder, tokenizer and segment spec the store was made with."
    )
