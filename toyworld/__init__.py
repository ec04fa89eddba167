"""The embedded default: a procedural world of captioned long videos, and stand-in weights fitted on it.

`world` renders frames, `procedures` gives videos their long-range structure, `generate` writes a
corpus (h264 videos, truth, caption bank), `encoder` fits and evaluates the stand-in open_clip model.
"""
