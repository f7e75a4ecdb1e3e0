"""The Label Studio ML backend of ``auxol serve``: brush RLE, the protocol, task images, webhooks.

The foundation model is the stand-in EllipseModel; Label Studio's file server is a local
HTTP server in a thread (never the network).
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest

from auxol.data import read_mask
from auxol.errors import DataError
from auxol.evaluate.metrics import dice
from auxol.prompts import DEFAULT_BOX_MARGIN, prompts_from_mask
from auxol.serve.labelstudio_format import LabelConfig, prompts_from_results
from auxol.serve.rle import decode, encode, mask_to_rle, rle_to_mask
from auxol.serve.sources import TaskImages
from conftest import disk_image
from test_serve_support import client_for, ellipse_mask, open_session, png, read_rows

CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Lesion" background="#f00"/></BrushLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Lesion"/></RectangleLabels>
</View>"""
BOX = (55, 45, 125, 115)  # around the disk of disk_image(): 200 x 160 image
RECTANGLE = {  # BOX in percent of the image size, as Label Studio sends it
    "type": "rectanglelabels", "from_name": "box", "to_name": "image", "original_width": 200, "original_height": 160,
    "value": {"x": 27.5, "y": 28.125, "width": 35.0, "height": 43.75, "rotation": 0, "rectanglelabels": ["Lesion"]},
}


# ---------------------------------------------------------------------------- brush RLE

def test_rle_round_trips_masks_of_any_shape():
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) > 0.5, np.zeros((1, 1), bool), np.ones((300, 300), bool), np.zeros((64, 48), bool)]
    masks.append(np.pad(np.ones((20, 30), bool), ((5, 9), (11, 2))))
    for mask in masks:
        assert np.array_equal(rle_to_mask(mask_to_rle(mask), *mask.shape), mask)
    values = rng.integers(0, 256, 5000).astype(np.uint8)
    assert np.array_equal(decode(encode(values)), values)
    # 360,000 equal values: a 53-bit header and 6 repeat chunks of <= 65,536 values, 27 bits each: 215 bits, 27 bytes
    assert len(mask_to_rle(np.ones((300, 300), bool))) == 27


def test_rle_matches_label_studios_own_bytes():
    # Written by label-studio-converter's brush.mask2rle (the codec Label Studio's tools use).
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = mask[0, 4] = True
    theirs = [0, 0, 0, 80, 57, 27, 253, 240, 8, 255, 227, 0, 183, 255, 56, 5, 191, 252, 46, 0]
    assert mask_to_rle(mask) == theirs and np.array_equal(rle_to_mask(theirs, 4, 5), mask)
    # brush.encode_rle([7, 9, 9, 200]): single values as literal chunks, the pair as a repeat chunk.
    assert decode([0, 0, 0, 4, 57, 27, 248, 0, 240, 132, 129, 144]).tolist() == [7, 9, 9, 200]


def test_rle_rejects_broken_data():
    rle = mask_to_rle(np.ones((10, 10), bool))
    with pytest.raises(DataError, match="ends in the middle"):
        decode(rle[:-2])
    with pytest.raises(DataError, match="a 20x10 RGBA image has 800"):
        rle_to_mask(rle, 10, 20)
    with pytest.raises(DataError, match="integers in 0..255"):
        decode([0, 0, 0, 4, 57, 300])


# --------------------------------------------------------------------- config, prompts

def test_label_config_and_prompts_from_results():
    config = LabelConfig.parse(CONFIG)
    assert (config.brush_name, config.image_name, config.image_key, config.label) == ("tag", "image", "image", "Lesion")
    with pytest.raises(DataError, match="no <BrushLabels> tag"):
        LabelConfig.parse('<View><Image name="i" value="$img"/></View>')
    with pytest.raises(DataError, match="not XML"):
        LabelConfig.parse("<View>")
    points = [
        {"type": "keypointlabels", "is_positive": True, "value": {"x": 50, "y": 50, "width": 1}},
        {"type": "keypointlabels", "is_positive": False, "value": {"x": 10, "y": 100, "width": 1}},
    ]
    box, clicks = prompts_from_results([RECTANGLE, *points], 160, 200)
    assert box.box == pytest.approx(BOX)
    assert clicks.points == ((100.0, 80.0), (20.0, 159.0)) and clicks.labels == (1, 0)  # 100% clips to the last pixel
    with pytest.raises(DataError, match="rectanglelabels region: missing or bad value 'width'"):
        prompts_from_results([{"type": "rectanglelabels", "value": {"x": 1, "y": 1}}], 160, 200)


# -------------------------------------------------------------------------- protocol

def brush_of(reply_result: dict) -> np.ndarray:
    return rle_to_mask(reply_result["value"]["rle"], reply_result["original_height"], reply_result["original_width"])


def annotation(mask: np.ndarray, *extra: dict) -> dict:
    height, width = mask.shape
    brush = {"type": "brushlabels", "from_name": "tag", "to_name": "image", "original_width": width,
             "original_height": height, "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": ["Lesion"]}}
    return {"id": 1, "result": [*extra, brush]}


def test_health_setup_and_interactive_predict(tmp_path):
    image, _ = disk_image()
    path = tmp_path / "scan.png"
    path.write_bytes(png(image))
    with client_for(open_session(tmp_path / "session")) as client:
        assert client.get("/health").json() == {"status": "UP", "model_class": "AuxOL"}
        assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).json() == {"model_version": "auxol-ellipse-cpu"}
        bad = client.post("/setup", json={"schema": "<View/>"})
        assert bad.status_code == 400 and "no <BrushLabels>" in bad.json()["error"]
        body = {"tasks": [{"id": 7, "data": {"image": str(path)}}], "label_config": CONFIG,
                "params": {"context": {"result": [RECTANGLE]}}}
        reply = client.post("/predict", json=body).json()
        [prediction] = reply["results"]
        [result] = prediction["result"]
        assert (result["from_name"], result["to_name"], result["type"]) == ("tag", "image", "brushlabels")
        assert result["value"]["brushlabels"] == ["Lesion"] and (result["original_width"], result["original_height"]) == (200, 160)
        assert np.array_equal(brush_of(result), ellipse_mask((160, 200), BOX))
        assert prediction["score"] == pytest.approx(0.99753, abs=1e-4)  # sigmoid(6): the stand-in's logits
        assert reply["model_version"] == prediction["model_version"] == "auxol-ellipse-cpu"

        no_prompt = client.post("/predict", json={"tasks": [{"id": 8, "data": {"image": str(path)}}]}).json()
        assert no_prompt["results"] == [{"result": [], "score": 0.0, "model_version": "auxol-ellipse-cpu"}]
        carried = {"id": 9, "data": {"image": str(path)}, "annotations": [{"result": []}], "predictions": [{"result": [RECTANGLE]}]}
        [from_task] = client.post("/predict", json={"tasks": [carried]}).json()["results"]
        assert np.array_equal(brush_of(from_task["result"][0]), ellipse_mask((160, 200), BOX))
        missing = client.post("/predict", json={"tasks": [{"id": 10, "data": {"img": "x.png"}}]})
        assert missing.status_code == 400 and "task 10: no image reference under data.image" in missing.json()["error"]
        malformed = client.post("/predict", json={"tasks": "all"})
        assert malformed.status_code == 422 and "body.tasks: Input should be a valid list" in malformed.json()["error"]


class FakeLabelStudio(BaseHTTPRequestHandler):
    """Serves one PNG under /ls/data/upload/1/scan.png (token required) and /open/scan.png; records each request's token."""

    image: ClassVar[bytes] = b""
    tokens: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        FakeLabelStudio.tokens.append((self.path, self.headers.get("Authorization")))
        allowed = self.path == "/open/scan.png" or (
            self.path == "/ls/data/upload/1/scan.png" and self.headers.get("Authorization") == "Token secret"
        )
        self.send_response(200 if allowed else 401)
        self.end_headers()
        if allowed:
            self.wfile.write(self.image)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_label_studio():
    """The address of a local stand-in for Label Studio's file server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_task_images_from_every_kind_of_reference(tmp_path, fake_label_studio):
    image, _ = disk_image()
    path = tmp_path / "scan.png"
    path.write_bytes(png(image))
    FakeLabelStudio.image, FakeLabelStudio.tokens = png(image), []
    images = TaskImages(fake_label_studio + "/ls", api_key="secret")
    references = [str(path), path.as_uri(), "data:image/png;base64," + base64.b64encode(png(image)).decode(),
                  "/data/upload/1/scan.png", fake_label_studio + "/open/scan.png"]
    for reference in references:
        assert np.array_equal(images.read(reference), image), reference
    assert FakeLabelStudio.tokens == [("/ls/data/upload/1/scan.png", "Token secret"), ("/open/scan.png", None)]
    with pytest.raises(DataError, match="HTTP 401"):
        TaskImages(fake_label_studio + "/ls", api_key="wrong").read("/data/upload/1/scan.png")
    with pytest.raises(DataError, match="start the server with --label-studio-url"):
        TaskImages().read("/data/upload/1/scan.png")
    with pytest.raises(DataError, match="data: URI: cannot read image"):
        TaskImages().read("data:image/png;base64,bm90IGFuIGltYWdl")


def test_webhook_learns_the_annotation(tmp_path):
    image, truth = disk_image()
    other, other_truth = disk_image(centre=(120, 90), radius=30, seed=3)
    paths = {}
    for name, picture in (("scan", image), ("other", other)):
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(png(picture))
    session = open_session(tmp_path / "session")
    project = {"id": 1, "label_config": CONFIG}
    with client_for(session) as client:
        task = {"id": 7, "data": {"image": str(paths["scan"])}}
        client.post("/predict", json={"tasks": [task], "label_config": CONFIG, "params": {"context": {"result": [RECTANGLE]}}})
        event = {"action": "ANNOTATION_CREATED", "task": task, "annotation": annotation(truth, RECTANGLE), "project": project}
        reply = client.post("/webhook", json=event)
        assert reply.status_code == 200 and reply.json()["status"] == "queued"
        # An update of a learned image is saved, not learned again; an image never predicted is predicted first from the mask's box.
        updated_truth = truth.copy()
        updated_truth[:, :60] = False
        update = {"action": "ANNOTATION_UPDATED", "task": task, "annotation": annotation(updated_truth), "project": project}
        assert client.post("/webhook", json=update).json()["status"] == "saved, already learned"
        key = reply.json()["image_id"]
        assert np.array_equal(read_mask(tmp_path / "session" / "corrected" / f"{key}.png"), updated_truth)
        fresh = {"id": 8, "data": {"image": str(paths["other"])}}
        created = {"action": "ANNOTATION_CREATED", "task": fresh, "annotation": annotation(other_truth), "project": project}
        assert client.post("/webhook", json=created).json()["status"] == "queued"
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).json() == {"status": "ignored", "action": "PROJECT_UPDATED"}
        wrong = {**created, "annotation": annotation(other_truth[:100])}
        reply = client.post("/webhook", json=wrong)
        assert reply.status_code == 400 and "corrected mask is 200x100 pixels" in reply.json()["error"]
        session.wait()
        assert client.get("/api/status").json()["images_learned"] == 2
    rows = read_rows(tmp_path / "session" / "corrections.csv")
    assert [row["source"] for row in rows] == ["label-studio"] * 2
    assert float(rows[0]["shown_dice"]) == pytest.approx(dice(ellipse_mask((160, 200), BOX), truth))
    [box] = prompts_from_mask(other_truth, "box", box_margin=DEFAULT_BOX_MARGIN)  # the mask's box, 4 px wider per side
    assert box.box == (86.0, 56.0, 154.0, 124.0)
    assert float(rows[1]["base_dice"]) == pytest.approx(dice(ellipse_mask((160, 200), box.box), other_truth))  # 0.861
