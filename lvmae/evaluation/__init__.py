"""Evaluation: what a pretrained LV-MAE learned, measured on videos it did not train on.

`reconstruction` (the one reconstruction path and the held-out masked-segment MSE), `inspection` (what
the decoder fills in, read as captions, with R@k against the copy, interpolation, mean and original
baselines), `truth` (captioned steps per video, when known), `probes` (linear and attentive heads on
frozen features). It stands on retrieval (the caption bank) and pretraining; the top floor (the API, the
CLI, the report, the web app) stands on it.
"""
