"""``kill -9`` at random moments: no acknowledged correction is lost, and the learner that catches up equals one that never crashed.

The server is a real subprocess (``tests/test_serve_support.py``: the sessions around the
stand-in EllipseModel, with the real AuxOL learner, journal and worker). A client
corrects a stream of disk images the way a person does (predict, correct, wait for the
learning), while a timer SIGKILLs the server at a random moment after a random
acknowledgement: right after the 2xx, while it learns, while it saves. The client then
restarts it and re-sends what had no answer (a 2xx ``already journaled`` or a 409
telling it to predict again). The uninterrupted run is the same client against a
server that is never killed.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from test_serve_support import Server, png, wait_learned


def disk(index: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Image ``index`` of the stream: a noisy disk (uint8 (96, 112, 3)), its truth (bool), the box around it (inflated 3 px)."""
    rng = np.random.default_rng(index)
    centre, radius = (40 + 3 * (index % 8), 38 + 2 * (index % 5)), 16 + index % 7
    yy, xx = np.mgrid[:96, :112]
    truth = (xx - centre[0]) ** 2 + ((yy - centre[1]) * 1.2) ** 2 <= radius**2  # an ellipse: the box's inscribed one misses
    image = np.clip(40 + 150 * truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    box = [centre[0] - radius - 3, centre[1] - radius - 3, centre[0] + radius + 3, centre[1] + radius + 3]
    return np.repeat(image[..., None], 3, axis=2), truth, box


def correct_stream(server: Server, count: int, kills: int, seed: int) -> dict:
    """Correct images 0 .. count - 1, SIGKILLing the server ``kills`` times; returns what the client saw.

    Returns ``{"acknowledged": [image ids with a 2xx], "status": final status, "masks": final masks (base64 PNG)}``.
    """
    rng = random.Random(seed)
    kill_after = sorted(rng.sample(range(count), kills))  # kill after the acknowledgement of these corrections
    acknowledged: list[str] = []
    server.start()
    index = 0
    while index < count:
        image, truth, box = disk(index)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                wait_learned(client)
                key = acknowledged_key = None
                reply = client.post("/api/predict", data={"prompts": json.dumps([{"box": box}])},
                                    files={"image": ("d.png", png(image))})
                assert reply.status_code == 200, reply.text
                key = reply.json()["image_id"]
                if index in kill_after:
                    kill_after.remove(index)
                    delay = rng.choice([0.0, 0.0, rng.uniform(0, 0.05), rng.uniform(0.05, 0.4)])
                    threading.Timer(delay, server.kill).start()  # from right after the 2xx to mid-learn and mid-save
                learned = client.post("/api/learn", data={"image_id": key}, files={"mask": ("m.png", png(truth))})
                assert learned.status_code == 202, learned.text
                acknowledged_key = key
                acknowledged.append(key)
                index += 1
        except httpx.TransportError:  # killed: restart, and re-send the correction that had no answer
            server.kill()
            server.start()
            if key is not None and acknowledged_key is None:
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    again = client.post("/api/learn", data={"image_id": key}, files={"mask": ("m.png", png(truth))})
                assert again.status_code in (200, 409), again.text  # 200: it was journaled; 409: predict it again
                if again.status_code == 200:
                    assert again.json()["status"] == "already journaled"
                    acknowledged.append(key)
                    index += 1
    with httpx.Client(base_url=server.url, timeout=30) as client:
        status = wait_learned(client)
        masks = []
        for index in range(count):  # every image predicted again with the final learner
            image, _, box = disk(index)
            reply = client.post("/api/predict", data={"image_id": acknowledged[index], "prompts": json.dumps([{"box": box}])})
            masks.append((reply.json()["mask"], reply.json()["alpha"]))
    server.stop()
    return {"acknowledged": acknowledged, "status": status, "masks": masks}


def check_kill_cycles(tmp_path: Path, count: int, kills: int) -> None:
    crashed_server = Server(tmp_path / "crashed")
    crashed = correct_stream(crashed_server, count, kills, seed=kills)
    calm = correct_stream(Server(tmp_path / "calm"), count, 0, seed=0)
    print(f"{kills} kill -9 cycles, {crashed_server.starts} starts, {len(set(crashed['acknowledged']))} acknowledged, "
          f"{crashed['status']['images_learned']} learned")
    assert crashed_server.starts == kills + 1
    assert len(set(crashed["acknowledged"])) == count == crashed["status"]["images_learned"]  # 0 lost, none learned twice
    assert crashed["status"]["corrections_journaled"] == count and crashed["status"]["corrections_failed"] == 0
    assert crashed["acknowledged"] == calm["acknowledged"]
    assert sum(alpha is not None for _, alpha in calm["masks"]) == count  # the fused learner shows them
    assert crashed["masks"] == calm["masks"]  # the learner after catching up is the uninterrupted one
    rows = (tmp_path / "crashed" / "default" / "corrections.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(n) for n in range(count)]  # each learned once, in order


def test_kill_9_loses_no_acknowledged_correction(tmp_path):
    check_kill_cycles(tmp_path, count=6, kills=2)


@pytest.mark.slow
def test_kill_9_twenty_times(tmp_path):
    check_kill_cycles(tmp_path, count=30, kills=20)
