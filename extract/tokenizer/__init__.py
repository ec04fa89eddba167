"""The MAGVIT-v2-style FSQ video tokenizer with its token scorer (model, fit, held-out checks).

`FrozenTokenizer` is what extraction runs: clips in; FSQ indices, token scores and one importance
per clip out.
"""

from lvmae.extract.tokenizer.frozen import FrozenTokenizer, TokenizerOutput

__all__ = ["FrozenTokenizer", "TokenizerOutput"]
