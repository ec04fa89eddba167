"""Stage 3: search the videos by text or by example, and see what the segments show.

`kinds` (which FAISS index, the auto rule), `index` (the segment index: build, update, freshness, disk),
`placement` (CPU or GPU), `captions` (the store's text tower, the caption bank), `moments` (hits into
moments), `search` (the query path), `sheet` (contact sheets of thumbnails).
"""
