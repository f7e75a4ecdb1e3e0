"""The JSON API and the browser page of ``auxol serve``, on a stand-in foundation model (EllipseModel)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auxol.data import read_image, read_mask
from auxol.evaluate.metrics import dice
from conftest import disk_image
from test_serve_support import client_for, decode_png, ellipse_mask, open_sessions, png, read_rows

BOX = (55, 45, 125, 115)  # around the disk of disk_image(): centre (90, 80), radius 35, image 200 x 160
PROMPTS = json.dumps([{"box": list(BOX)}])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def predict(client, image=None, image_id=None, prompts=PROMPTS):
    files = {"image": ("scan.png", png(image), "image/png")} if image is not None else None
    data = {"prompts": prompts} | ({"image_id": image_id} if image_id else {})
    return client.post("/api/predict", data=data, files=files)


def learn(client, image_id, mask, name="mask.png"):
    return client.post("/api/learn", data={"image_id": image_id}, files={"mask": (name, png(mask), "image/png")})


def test_predict_returns_the_shown_mask_and_keeps_the_image(tmp_path):
    image, _ = disk_image()
    with client_for(open_sessions(tmp_path)) as client:
        reply = predict(client, image)
        assert reply.status_code == 200
        body = reply.json()
        expected = ellipse_mask((160, 200), BOX)
        assert len(body["image_id"]) == 16 and (body["width"], body["height"], body["prompts"]) == (200, 160, 1)
        assert np.array_equal(decode_png(body["mask"]), expected) and np.array_equal(decode_png(body["base_mask"]), expected)
        assert body["alpha"] is None and body["fused"] is False and body["dice_with_base"] == 1.0
        assert body["mask_pixels"] == expected.sum() == body["base_pixels"]
        key = body["image_id"]
        assert np.array_equal(read_image(tmp_path / "default" / "images" / f"{key}.png"), image)
        assert np.array_equal(read_mask(tmp_path / "default" / "shown" / f"{key}.png"), expected)

        again = predict(client, image_id=key, prompts=json.dumps([{"box": list(BOX)}, {"points": [[20, 20]], "labels": [1]}]))
        assert again.status_code == 200 and again.json()["prompts"] == 2 and again.json()["image_id"] == key
        assert predict(client, image).json()["image_id"] == key  # the same pixels are the same image
        assert client.get("/api/status").json()["images_seen"] == 1


def test_bad_requests_answer_4xx_with_a_message(tmp_path):
    image, truth = disk_image()
    with client_for(open_sessions(tmp_path)) as client:
        key = predict(client, image).json()["image_id"]
        cases = [
            (client.post("/api/predict", data={"prompts": PROMPTS}, files={"image": ("scan.png", b"not an image")}),
             400, "scan.png: cannot read image (not an image, or corrupt)"),
            (predict(client, image_id=key, prompts='[{"box": [0, 0, 250, 100]}]'), 400, "(250, 100) lies outside the 200x160 image"),
            (predict(client, image_id=key, prompts="{"), 400, "prompts: expected JSON like"),
            (predict(client, image_id=key, prompts='[{"box": [9, 9, 1, 1]}]'), 400, "has x2 < x1"),
            (predict(client, image_id=key, prompts="[]"), 400, "no prompt"),
            (client.post("/api/predict", data={"prompts": PROMPTS}), 400, "give either an image file"),
            (predict(client, image_id="0123456789abcdef"), 404, "unknown image id '0123456789abcdef'"),
            (predict(client, image_id="../config"), 404, "unknown image id '../config'"),
            (client.post("/api/predict", data={"image_id": key}), 400, "give prompts (JSON like"),
            (learn(client, key, truth[:80, :100]), 400, f"corrected mask is 100x80 pixels but image {key} is 200x160"),
            (learn(client, key, np.zeros_like(truth)), 400, "is empty: nothing to learn"),
            (client.post("/api/learn", data={"image_id": key}, files={"mask": ("fix.png", b"")}), 400, "fix.png: cannot read image"),
            (learn(client, "0123456789abcdef", truth), 404, "unknown image id"),
        ]
        for reply, status, message in cases:
            assert reply.status_code == status, reply.text
            assert message in reply.json()["error"]
        assert learn(client, key, truth).status_code == 202  # the failed corrections did not use up the prediction
        again = learn(client, key, truth)  # a client re-sending after a lost answer: not learned twice
        assert again.status_code == 200 and again.json()["status"] == "already journaled" and again.json()["correction"] == 0
        other = learn(client, key, truth[::-1].copy())  # another correction needs another prediction
        assert other.status_code == 409 and "no shown prediction waiting for a correction" in other.json()["error"]


def test_learning_is_queued_saved_and_recorded(tmp_path):
    image, truth = disk_image()
    sessions = open_sessions(tmp_path)
    session = sessions.get()
    with client_for(sessions) as client:
        key = predict(client, image).json()["image_id"]
        reply = learn(client, key, truth)
        assert reply.status_code == 202 and reply.json()["status"] == "queued" and reply.json()["learning_queue"] in (0, 1)
        session.wait()
        status = client.get("/api/status").json()
    assert (status["images_seen"], status["images_learned"], status["learning_queue"], status["alpha_history"]) == (1, 1, 0, 1)
    assert status["alpha"] is None and status["model"] == "ellipse" and status["preset"] == "cpu" and status["last_error"] is None
    [row] = read_rows(tmp_path / "default" / "corrections.csv")
    shown = dice(ellipse_mask((160, 200), BOX), truth)  # the ellipse inscribed in the box vs the disk
    assert 0.9 < shown < 1
    assert (row["image_id"], row["prompts"], row["alpha"], row["source"]) == (key, "1", "", "api")
    assert float(row["shown_dice"]) == pytest.approx(shown) and float(row["base_dice"]) == pytest.approx(shown)
    changed = int(np.count_nonzero((ellipse_mask((160, 200), BOX) > 0) ^ (truth > 0)))
    assert 0 < changed and int(row["shown_changed_px"]) == changed == int(row["base_changed_px"])
    assert float(row["shown_changed_fraction"]) == pytest.approx(changed / np.count_nonzero(truth))
    assert (status["auxol_accept_90"], status["auxol_accept_95"]) == (1.0, float(shown >= 0.95))
    assert status["auxol_changed_fraction"] == pytest.approx(changed / np.count_nonzero(truth))
    assert np.array_equal(read_mask(tmp_path / "default" / "corrected" / f"{key}.png"), truth)
    assert (tmp_path / "default" / "session.pt").is_file()
    assert json.loads((tmp_path / "default" / "config.json").read_text())["auxol"]["queue_length"] == 8


def stream(n: int) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]]:
    """``n`` disk images of different places and sizes, with their truth and the box around it."""
    items = []
    for index in range(n):
        centre, radius = (70 + 9 * index, 60 + 5 * index), 25 + 2 * index
        image, truth = disk_image(centre=centre, radius=radius, seed=index)
        items.append((image, truth, (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)))
    return items


def correct_all(client, session, items) -> list[dict]:
    """Predict each image, then learn its truth (waiting for the learning): the prequential loop."""
    replies = []
    for image, truth, box in items:
        reply = predict(client, image, prompts=json.dumps([{"box": list(box)}])).json()
        assert learn(client, reply["image_id"], truth).status_code == 202
        session.wait()
        replies.append(reply)
    return replies


def test_each_prediction_uses_only_earlier_corrections(tmp_path):
    sessions = open_sessions(tmp_path)
    session = sessions.get()
    with client_for(sessions) as client:
        replies = correct_all(client, session, stream(7))
        best = [entry.best_alpha for entry in session.learner.alpha_log]
    # K = 5 (cpu preset): images 0-4 are shown by the foundation model alone; image 5 uses
    # the mean best alpha of images 0-4, image 6 that of images 1-5: never its own.
    assert [reply["alpha"] for reply in replies[:5]] == [None] * 5
    assert replies[5]["alpha"] == pytest.approx(np.mean(best[:5])) and replies[6]["alpha"] == pytest.approx(np.mean(best[1:6]))
    rows = read_rows(tmp_path / "default" / "corrections.csv")
    assert [row["alpha"] for row in rows] == ["" if r["alpha"] is None else str(r["alpha"]) for r in replies]
    for reply in replies:  # learning never rewrote what was shown
        assert np.array_equal(read_mask(tmp_path / "default" / "shown" / f"{reply['image_id']}.png"), decode_png(reply["mask"]))


def test_a_restarted_session_predicts_identically(tmp_path):
    items = stream(8)
    sessions = open_sessions(tmp_path)
    session = sessions.get()
    with client_for(sessions) as client:
        correct_all(client, session, items[:6])
        image, _, box = items[7]
        before = predict(client, image, prompts=json.dumps([{"box": list(box)}])).json()
    assert before["alpha"] is not None
    with client_for(open_sessions(tmp_path)) as client:  # a new server on the same folder
        after = predict(client, image_id=before["image_id"], prompts=json.dumps([{"box": list(box)}])).json()
        status = client.get("/api/status").json()
    assert after["mask"] == before["mask"] and after["alpha"] == before["alpha"]
    assert (status["images_seen"], status["images_learned"], status["alpha_history"]) == (7, 6, 6)
    assert len(read_rows(tmp_path / "default" / "corrections.csv")) == 6


def test_memory_holds_the_last_images_and_the_folder_the_rest(tmp_path):
    sessions = open_sessions(tmp_path, cache_size=2)
    session = sessions.get()
    with client_for(sessions) as client:
        keys = [predict(client, image).json()["image_id"] for image, _, _ in stream(3)]
        assert len(session.cache) == 2 and session.cache.get(keys[0]) is None
        again = predict(client, image_id=keys[0])  # read back from images/
        assert again.status_code == 200 and np.array_equal(decode_png(again.json()["mask"]), ellipse_mask((160, 200), BOX))


def test_the_page_and_health(tmp_path):
    with client_for(open_sessions(tmp_path)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for needed in ("Submit correction", "/api/predict", "/api/learn", "/api/status", 'type="range"', "destination-out"):
            assert needed in page.text
        for remote in ("http://", "https://", "<script src", "<link"):  # nothing fetched from elsewhere
            assert remote not in page.text
        assert client.get("/api/health").json() == {"status": "ok"}
