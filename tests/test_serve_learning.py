"""``auxol serve`` with the embedded LiteMedSAM: corrections sent over HTTP make the masks better, and survive a restart.

A person is simulated on synthetic ultrasound phantoms (:mod:`auxol.data.phantoms`),
whose truth has a faint rim that LiteMedSAM leaves out: for each image, a tight box
from the truth, ``POST /api/predict``, then the truth as the corrected mask,
``POST /api/learn``. Nine image embeddings in all (~1.5 s each on an idle 2-core CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from auxol.data.phantoms import phantom_stream
from auxol.evaluate.metrics import dice
from auxol.prompts import prompts_from_mask
from test_serve_support import client_for, decode_png, open_sessions, png

N = 8  # phantoms corrected: LiteMedSAM alone shows the first 5 (K = 5), the fused model the other 3


def box_prompts(mask: np.ndarray) -> str:
    """The tight box around each object of ``mask``, as the JSON prompts of /api/predict."""
    return json.dumps([prompt.to_dict() for prompt in prompts_from_mask(mask, "box")])


@pytest.fixture(scope="module")
def served(litemedsam, tmp_path_factory):
    """The session folder, the replies and Dice of the shown masks, and the last image predicted again after learning."""
    root = tmp_path_factory.mktemp("serve-phantoms")
    phantoms = phantom_stream(N, seed=0, size=256)
    sessions = open_sessions(root, litemedsam)
    session = sessions.get()
    replies, shown_dice = [], []
    with client_for(sessions) as client:
        for phantom in phantoms:
            files = {"image": ("p.png", png(phantom.image))}
            reply = client.post("/api/predict", data={"prompts": box_prompts(phantom.mask)}, files=files).json()
            shown_dice.append(dice(decode_png(reply["mask"]), phantom.mask))
            learned = client.post("/api/learn", data={"image_id": reply["image_id"]}, files={"mask": ("m.png", png(phantom.mask))})
            assert learned.status_code == 202
            session.wait()  # as a person would: the next image comes after this one is learned
            replies.append(reply)
        again = client.post("/api/predict", data={"image_id": replies[-1]["image_id"], "prompts": box_prompts(phantoms[-1].mask)})
    return {"root": root, "replies": replies, "dice": shown_dice, "again": again.json(), "prompts": box_prompts(phantoms[-1].mask)}


def test_corrections_make_the_shown_masks_better(served):
    alphas = [reply["alpha"] for reply in served["replies"]]
    assert alphas[:5] == [None] * 5 and None not in alphas[5:]
    first, last = np.mean(served["dice"][:5]), np.mean(served["dice"][5:])
    print(f"shown Dice: first 5 (LiteMedSAM alone) {first:.3f}, last 3 {last:.3f}, per image {np.round(served['dice'], 3)}")
    assert first < 0.82 and last > 0.95  # measured: 0.774 -> 0.969


def test_a_restarted_server_gives_the_identical_mask(served, litemedsam):
    with client_for(open_sessions(served["root"], litemedsam)) as client:
        reply = client.post("/api/predict", data={"image_id": served["again"]["image_id"], "prompts": served["prompts"]}).json()
        status = client.get("/api/status").json()
    assert reply["mask"] == served["again"]["mask"] and reply["alpha"] == served["again"]["alpha"] is not None
    assert (status["images_seen"], status["images_learned"], status["alpha_history"], status["learning_queue"]) == (N, N, N, 0)
