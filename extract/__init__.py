"""Stage 1: decode videos into segments, run the frozen encoder and tokenizer, write store shards.

`decode` (PyAV, streaming, by presentation time), `inputs` (what a job reads), `encoder` (open_clip),
`tokenizer` (MAGVIT-FSQ with token scorer).
"""
