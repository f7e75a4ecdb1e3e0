"""Foundation models: preprocessing, the embedded LiteMedSAM, and the other families' code paths."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from auxol.errors import WeightsError
from auxol.evaluate.metrics import dice
from auxol.models import build_model, load_model
from auxol.models import preprocess, weights
from auxol.prompts import Prompt, prompts_from_mask
from conftest import disk_image


def test_litemedsam_preprocessing_matches_official_recipe():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 50
    image[:, 100:] = 150
    tensor = preprocess.LITEMEDSAM.image_to_input(image)
    assert tensor.shape == (3, 256, 256)
    assert preprocess.LITEMEDSAM.resized_size(100, 200) == (128, 256)
    assert tensor[:, :128].min() == 0.0 and tensor[:, :128].max() == 1.0  # min-max to [0, 1]
    assert torch.all(tensor[:, 128:] == 0)  # zero padding below the resized image
    corner = preprocess.LITEMEDSAM.coords_to_input(np.array([[199.0, 99.0]]), 100, 200)
    np.testing.assert_allclose(corner, [[254.72, 126.72]], atol=0.01)


def test_logits_return_to_image_size_and_place():
    prep = preprocess.SAM
    low_res = torch.full((1, 1, 256, 256), -5.0)
    low_res[..., :64, :128] = 5.0  # the top-left quarter of the square input
    logits = prep.logits_to_image(low_res, 300, 600)  # resized extent 512x1024: 1/4 of rows, 1/2 of columns
    assert logits.shape == (1, 300, 600)
    positive = (logits[0] > 0).numpy()
    assert positive[:100, :250].all() and not positive[200:].any() and not positive[:, 350:].any()


def test_embedded_litemedsam_segments_a_disk_from_its_box(litemedsam):
    image, truth = disk_image()
    embedding = litemedsam.embed(image)
    assert embedding.features.shape == (1, 256, 64, 64)
    logits = litemedsam.segment(embedding, prompts_from_mask(truth, "box")[0])
    assert logits.shape == truth.shape and logits.dtype == np.float32
    assert dice(logits > 0, truth) > 0.9


def test_segment_many_equals_one_by_one_and_keeps_order(litemedsam):
    image, truth = disk_image()
    embedding = litemedsam.embed(image)
    prompts = [Prompt.from_box((40, 50, 120, 130)), Prompt.from_point(80, 90), Prompt.from_box((0, 0, 60, 60))]
    together = litemedsam.segment_many(embedding, prompts)
    for prompt, logits in zip(prompts, together):
        np.testing.assert_allclose(litemedsam.segment(embedding, prompt), logits, atol=1e-4)


@pytest.mark.parametrize("name", ["mobilesam", "sam_vit_b", "medsam_vit_b"])
def test_other_families_load_from_a_checkpoint_and_segment(name, tmp_path):
    torch.manual_seed(0)
    random_model = build_model(name)
    path = tmp_path / f"{name}.pth"
    torch.save(random_model.state_dict(), path)
    model = load_model(name, checkpoint=path, device="cpu")
    assert not any(p.requires_grad for p in model.parameters())
    image, truth = disk_image((90, 120))
    embedding = model.embed(image)
    assert embedding.features.shape == (1, 256, 64, 64)
    box, point = Prompt.from_box((10, 20, 60, 70)), Prompt(points=((30.0, 40.0), (5.0, 5.0)), labels=(1, 0))
    logits = model.segment_many(embedding, [box, point])
    assert logits.shape == (2, 90, 120) and np.isfinite(logits).all()
    np.testing.assert_allclose(model.segment(embedding, box), logits[0], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sam_vit_l", "sam_vit_h"])
def test_large_vits_load_from_a_checkpoint(name, tmp_path):
    path = tmp_path / f"{name}.pth"
    torch.save(build_model(name).state_dict(), path)
    model = load_model(name, checkpoint=path, device="cpu")
    assert model.segment(model.embed(disk_image()[0]), Prompt.from_box((10, 10, 50, 50))).shape == (160, 200)


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXOL_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="auxol models fetch sam_vit_b"):
        load_model("sam_vit_b")


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "mobile.pth"
    torch.save(build_model("mobilesam").state_dict(), path)
    with pytest.raises(WeightsError, match=r"mobile\.pth: not a litemedsam checkpoint.*shape"):
        load_model("litemedsam", checkpoint=path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_model("litemedsam", checkpoint=tmp_path / "junk.pth")


@pytest.fixture
def served_file(tmp_path):
    """A file served over HTTP on 127.0.0.1; yields (url, sha256)."""
    root = tmp_path / "www"
    root.mkdir()
    payload = np.random.default_rng(0).bytes(300_000)
    (root / "weights.pth").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/weights.pth", hashlib.sha256(payload).hexdigest()
    server.shutdown()


def test_fetch_downloads_and_verifies(served_file, tmp_path, monkeypatch):
    url, digest = served_file
    monkeypatch.setenv("AUXOL_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(weights.CHECKPOINT_FILES, "sam_vit_b", weights.CheckpointFile("sam_vit_b.pth", url, digest))
    seen = []
    path = weights.fetch("sam_vit_b", progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "home" / "checkpoints" / "sam_vit_b.pth"
    assert weights.file_digest(path) == digest and seen[-1] == (300_000, 300_000)


def test_fetch_refuses_a_file_with_another_digest(served_file, tmp_path, monkeypatch):
    url, _ = served_file
    monkeypatch.setenv("AUXOL_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(weights.CHECKPOINT_FILES, "sam_vit_b", weights.CheckpointFile("sam_vit_b.pth", url, "0" * 64))
    with pytest.raises(WeightsError, match="expected 0000"):
        weights.fetch("sam_vit_b")
    assert not any((tmp_path / "home" / "checkpoints").iterdir())
