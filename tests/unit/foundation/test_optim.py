import math

import pytest
import torch

from lvmae.foundation.optim import decay_groups, warmup_cosine


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [warmup_cosine(s, warmup=10, steps=110) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[60] == pytest.approx(0.5) and f[-1] < 0.001
    assert warmup_cosine(0, warmup=0, steps=5) == 1.0 and math.isfinite(warmup_cosine(7, warmup=0, steps=5))


def test_lr_schedule_can_decay_to_a_floor():
    f = [warmup_cosine(s, warmup=10, steps=110, floor=0.05) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[10] == pytest.approx(1.0)
    assert f[110] == pytest.approx(0.05) and min(f) == pytest.approx(0.05)


def test_decay_groups_leave_biases_norms_tokens_embeddings_and_temperature_undecayed():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)
            self.norm = torch.nn.LayerNorm(4)
            self.token = torch.nn.Parameter(torch.zeros(4))
            self.token_embedding = torch.nn.Embedding(10, 4)
            self.logit_scale = torch.nn.Parameter(torch.ones([]))

    model = Model()
    decayed, rest = decay_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert [id(p) for p in decayed["params"]] == [id(model.proj.weight)]
    assert len(rest["params"]) == len(list(model.parameters())) - 1
