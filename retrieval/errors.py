"""The errors of the retrieval stage: each a message that names the index, store, file or value."""

from __future__ import annotations

from lvmae.foundation.errors import LvmaeError


class RetrievalError(LvmaeError):
    """An index, caption bank or query that cannot be used as given."""


class StaleIndex(RetrievalError):
    """The index no longer covers what its store has committed; the message names the command that updates it."""


class NotTextAligned(RetrievalError):
    """Text queries on embeddings that are not in the text encoder's space (LV-MAE features)."""
