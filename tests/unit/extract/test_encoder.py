import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from lvmae.extract.encoder import ImageTextEncoder
from lvmae.foundation.files import sha256_file
from lvmae.toyworld.encoder import CONFIG_DIR, SHIPPED_WEIGHTS


@pytest.fixture(scope="module")
def enc():
    return ImageTextEncoder(
        "toyclip", SHIPPED_WEIGHTS, model_configs=[CONFIG_DIR], device="cpu", precision="fp32", batch_size=7
    )


def frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h, w", [(64, 64), (72, 96), (40, 50)])
def test_frame_embeddings_equal_open_clip_on_its_own_transforms(enc, h, w):
    x = frames(10, h, w)
    model, _, preprocess = open_clip.create_model_and_transforms("toyclip", pretrained=str(SHIPPED_WEIGHTS))
    model.eval()
    with torch.no_grad():
        ref = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in x]))
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    ours = enc.encode_frames(x)
    assert np.abs(ours - ref).max() < 1e-5


def test_embeddings_are_normalised_and_segments_average(enc):
    x = frames(12, 64, 64, seed=1)
    e = enc.encode_frames(x)
    assert e.shape == (12, enc.dim) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    seg = enc.encode_segments(x.reshape(3, 4, 64, 64, 3))
    mean = e.reshape(3, 4, -1).mean(1)
    assert np.allclose(seg, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    assert enc.encode_frames(x[:0]).shape == (0, enc.dim)


def test_text_embeddings_and_zero_shot(enc):
    t = enc.encode_text(["a red circle on a blue background", "an empty gray background"])
    assert t.shape == (2, enc.dim) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)


def test_text_runs_only_up_to_the_last_end_of_text_and_equals_open_clip(enc):
    texts = ["a red circle", "x", "a blue square spinning on a black background, slowly"]
    with torch.no_grad():
        full = torch.nn.functional.normalize(enc.model.encode_text(enc.tokenizer(texts)), dim=-1).numpy()
    assert np.abs(enc.encode_text(texts) - full).max() < 1e-6
    # one text at a time: each trims to its own length and still equals the padded batch
    assert np.abs(np.concatenate([enc.encode_text([t]) for t in texts]) - full).max() < 1e-5


def test_identity_names_model_and_weights(enc):
    assert enc.identity.name == "toyclip"
    assert enc.identity.weights_sha256 == sha256_file(SHIPPED_WEIGHTS)
    tagged = ImageTextEncoder("toyclip", None, model_configs=[CONFIG_DIR], device="cpu")
    assert tagged.identity.pretrained == "random-init" and len(tagged.identity.weights_sha256) == 64


def test_clear_errors():
    with pytest.raises(ValueError, match="not an open_clip model name"):
        ImageTextEncoder("no-such-model", None, device="cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ImageTextEncoder("toyclip", "weights/missing.pt", model_configs=[CONFIG_DIR], device="cpu")
