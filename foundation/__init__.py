"""The ground floor: what every stage may import, importing no stage itself.

- `loader` / `schema`: the typed config (`pipeline.yaml` read once into dataclasses);
- `progress`: progress bars (lines every 30 s when the output is not a terminal) and stage summaries;
- `runtime`: torch device and autocast dtype, starting or joining Ray, checking Ray resources;
- `files`: atomic, durable writes (temp file, fsync, rename, fsync of the folder) and file hashes;
- `provenance`: the provenance file beside a shipped weights file;
- `optim`: the warmup + cosine learning-rate schedule and AdamW weight-decay groups;
- `errors`: `LvmaeError`, the base of every error a user can fix.
"""
