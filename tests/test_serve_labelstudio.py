"""The Label Studio ML backend of ``auxol serve``: brush RLE, the protocol, task images, webhooks.

The foundation model is the stand-in EllipseModel; Label Studio's file server is a local
HTTP server in a thread (never the network).
"""

from __future__ import annotations

import base64
import json
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
from auxol.serve.labelstudio_webhook import WebhookAuthorizer
from auxol.serve.sources import LabelStudioAuth, TaskImages
from conftest import disk_image
from test_serve_support import client_for, ellipse_mask, open_sessions, png, read_rows

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
    with pytest.raises(DataError, match=r"announces 400 values; expected 800 \(a 20x10 RGBA image\)"):
        rle_to_mask(rle, 10, 20)
    huge = encode(np.zeros(0, np.uint8))  # a header claiming 10^9 values is refused before anything is allocated
    huge[:4] = list((10**9).to_bytes(4, "big"))
    with pytest.raises(DataError, match="announces 1000000000 values; expected 400"):
        rle_to_mask(huge, 10, 10)
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


def test_health_setup_and_batch_predict(tmp_path):
    image, _ = disk_image()
    path = tmp_path / "scan.png"
    path.write_bytes(png(image))
    images = TaskImages(files_roots=[tmp_path])
    with client_for(open_sessions(tmp_path / "sessions", images=images), images) as client:
        assert client.get("/health").json() == {"status": "UP", "model_class": "AuxOL"}
        assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).json() == {"model_version": "auxol-ellipse-cpu-0"}
        bad = client.post("/setup", json={"project": "1.1", "schema": "<View/>"})
        assert bad.status_code == 400 and "no <BrushLabels>" in bad.json()["error"]
        body = {"project": "1.1", "tasks": [{"id": 7, "data": {"image": str(path)}}], "label_config": CONFIG,
                "params": {"context": {"result": [RECTANGLE]}}}
        reply = client.post("/predict", json=body).json()
        [prediction] = reply["results"]
        [result] = prediction["result"]
        assert (result["from_name"], result["to_name"], result["type"]) == ("tag", "image", "brushlabels")
        assert result["value"]["brushlabels"] == ["Lesion"] and (result["original_width"], result["original_height"]) == (200, 160)
        assert np.array_equal(brush_of(result), ellipse_mask((160, 200), BOX))
        assert prediction["score"] == pytest.approx(0.99753, abs=1e-4)  # sigmoid(6): the stand-in's logits
        assert reply["model_version"] == prediction["model_version"] == "auxol-ellipse-cpu-0"
        assert client.get("/versions").json() == {"versions": ["auxol-ellipse-cpu-0"]}

        # One entry per task: a task without prompts, or whose image cannot be read, gets none ([]); the others theirs.
        carried = {"id": 9, "data": {"image": str(path)}, "annotations": [{"result": []}], "predictions": [{"result": [RECTANGLE]}]}
        batch = [{"id": 8, "data": {"image": str(path)}}, carried, {"id": 10, "data": {"img": "x.png"}},
                 {"id": 11, "data": {"image": "/etc/passwd"}, "predictions": [{"result": [RECTANGLE]}]}]
        reply = client.post("/predict", json={"project": "1.1", "tasks": batch})
        assert reply.status_code == 200
        no_prompt, from_task, no_reference, refused = reply.json()["results"]
        assert no_prompt == no_reference == refused == []
        assert np.array_equal(brush_of(from_task["result"][0]), ellipse_mask((160, 200), BOX))
        malformed = client.post("/predict", json={"tasks": "all"})
        assert malformed.status_code == 422 and "body.tasks: Input should be a valid list" in malformed.json()["error"]
        # Each project is a session of its own.
        assert client.post("/predict", json={**body, "project": "2.5"}).status_code == 200
        names = [entry["name"] for entry in client.get("/api/sessions").json()["sessions"]]
        assert names == ["label-studio-1", "label-studio-2"]


class FakeLabelStudio(BaseHTTPRequestHandler):
    """Label Studio's file server and token refresh, under /ls: a legacy token, or a PAT whose access tokens expire.

    /ls/data/upload/1/scan.png needs ``Token legacy`` or ``Bearer <the current access token>``;
    POST /ls/api/token/refresh/ with ``{"refresh": PAT}`` gives a new access token.
    Set ``expire`` to make the current access token invalid. Records each request.
    """

    PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
    image: ClassVar[bytes] = b""
    requests: ClassVar[list[tuple[str, str, str | None]]] = []
    access: ClassVar[int] = 0

    def do_GET(self) -> None:
        FakeLabelStudio.requests.append(("GET", self.path, self.headers.get("Authorization")))
        allowed = self.path == "/ls/data/upload/1/scan.png" and self.headers.get("Authorization") in (
            "Token legacy", f"Bearer access-{self.access}")
        self.send_response(200 if allowed else 401)
        self.end_headers()
        if allowed:
            self.wfile.write(self.image)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLabelStudio.requests.append(("POST", self.path, None))
        ok = self.path == "/ls/api/token/refresh/" and body == {"refresh": self.PAT}
        if ok:
            FakeLabelStudio.access += 1
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(json.dumps({"access": f"access-{self.access}"} if ok else {"detail": "bad token"}).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_label_studio():
    """The address of a local stand-in for Label Studio's file server."""
    FakeLabelStudio.requests, FakeLabelStudio.access = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudio)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_task_images_from_the_allowed_sources_only(tmp_path, fake_label_studio):
    image, _ = disk_image()
    (tmp_path / "root").mkdir()
    path = tmp_path / "root" / "scan.png"
    path.write_bytes(png(image))
    (tmp_path / "outside.png").write_bytes(png(image))
    FakeLabelStudio.image = png(image)
    images = TaskImages(fake_label_studio + "/ls", token="legacy", files_roots=[tmp_path / "root"])
    references = [str(path), path.as_uri(), "data:image/png;base64," + base64.b64encode(png(image)).decode(),
                  "/data/upload/1/scan.png", fake_label_studio + "/ls/data/upload/1/scan.png"]
    for reference in references:
        assert np.array_equal(images.read(reference), image), reference
    assert [entry[2] for entry in FakeLabelStudio.requests] == ["Token legacy"] * 2
    local = TaskImages(files_roots=[tmp_path / "root"])  # with Label Studio, other absolute paths are Label Studio's
    refused = [(local, str(tmp_path / "outside.png")), (local, str(tmp_path / "missing.png")),
               (local, str(tmp_path / "root" / ".." / "outside.png")), (local, "/etc/passwd"), (local, "scan.png"),
               (images, "file:///etc/passwd"), (images, "file:///etc/no-such-file"), (images, fake_label_studio + "/open/scan.png"),
               (images, fake_label_studio.replace("127.0.0.1", "localhost") + "/ls/data/upload/1/scan.png"),
               (images, "ftp://x/y.png"), (images, "http://127.0.0.1:9/ls/data/upload/1/scan.png"),
               (images, fake_label_studio.replace("//", "//user@") + "/ls/data/upload/1/scan.png")]
    messages = set()
    for reader, reference in refused:
        with pytest.raises(DataError, match="not an allowed source") as error:
            reader.read(reference)
        messages.add(str(error.value).replace(repr(reference), "X"))
    assert len(messages) == 2  # one per reader: the same whether the target exists or not
    assert len(FakeLabelStudio.requests) == 2  # nothing refused was fetched
    with pytest.raises(DataError, match="HTTP 401"):
        TaskImages(fake_label_studio + "/ls", token="wrong").read("/data/upload/1/scan.png")
    with pytest.raises(DataError, match="not an allowed source"):
        TaskImages().read("/data/upload/1/scan.png")
    with pytest.raises(DataError, match="data: URI: cannot read image"):
        TaskImages().read("data:image/png;base64,bm90IGFuIGltYWdl")


def test_a_personal_access_token_is_exchanged_and_renewed(fake_label_studio):
    image, _ = disk_image()
    FakeLabelStudio.image = png(image)
    images = TaskImages(fake_label_studio + "/ls", token=FakeLabelStudio.PAT)
    assert np.array_equal(images.read("/data/upload/1/scan.png"), image)
    assert np.array_equal(images.read("/data/upload/1/scan.png"), image)  # the access token is kept
    FakeLabelStudio.access += 1  # the access token expired
    assert np.array_equal(images.read("/data/upload/1/scan.png"), image)
    assert [(method, auth) for method, _, auth in FakeLabelStudio.requests] == [
        ("POST", None), ("GET", "Bearer access-1"), ("GET", "Bearer access-1"),
        ("GET", "Bearer access-1"), ("POST", None), ("GET", "Bearer access-3")]
    with pytest.raises(DataError, match="refused the personal access token"):
        TaskImages(fake_label_studio + "/ls", token=FakeLabelStudio.PAT.replace("c2ln", "eHh4")).read("/data/upload/1/scan.png")


def test_webhook_journals_and_the_worker_learns(tmp_path):
    image, truth = disk_image()
    other, other_truth = disk_image(centre=(120, 90), radius=30, seed=3)
    paths = {}
    for name, picture in (("scan", image), ("other", other)):
        paths[name] = tmp_path / f"{name}.png"
        paths[name].write_bytes(png(picture))
    images = TaskImages(files_roots=[tmp_path])
    sessions = open_sessions(tmp_path / "sessions", images=images)
    project = {"id": 1, "label_config": CONFIG}
    folder = tmp_path / "sessions" / "label-studio-1"
    with client_for(sessions, images) as client:
        task = {"id": 7, "data": {"image": str(paths["scan"])}}
        client.post("/predict", json={"project": "1.1", "tasks": [task], "label_config": CONFIG,
                                      "params": {"context": {"result": [RECTANGLE]}}})
        event = {"action": "ANNOTATION_CREATED", "task": task, "annotation": annotation(truth, RECTANGLE), "project": project}
        reply = client.post("/webhook", json=event)
        assert reply.status_code == 200 and reply.json()["status"] == "queued" and reply.json()["correction"] == 0
        key = reply.json()["image_id"]
        # An update of a learned image is saved, not learned again; an image never predicted is predicted by the worker.
        updated_truth = truth.copy()
        updated_truth[:, :60] = False
        update = {"action": "ANNOTATION_UPDATED", "task": task, "annotation": annotation(updated_truth), "project": project}
        assert client.post("/webhook", json=update).json()["status"] == "queued"
        fresh = {"id": 8, "data": {"image": str(paths["other"])}}
        created = {"action": "ANNOTATION_CREATED", "task": fresh, "annotation": annotation(other_truth), "project": project}
        queued = client.post("/webhook", json=created).json()
        assert (queued["image_id"], queued["status"], queued["correction"], queued["session"]) == (None, "queued", 2, "label-studio-1")
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).json() == {"status": "ignored", "action": "PROJECT_UPDATED"}
        wrong = {**event, "annotation": annotation(truth[:100])}  # an image known from /predict: checked at once
        reply = client.post("/webhook", json=wrong)
        assert reply.status_code == 400 and "corrected mask is 200x100 pixels" in reply.json()["error"]
        late_wrong = {**created, "task": {"id": 9, "data": {"image": str(tmp_path / "elsewhere.png")}}}
        assert client.post("/webhook", json=late_wrong).status_code == 200  # journaled; the worker cannot read the image
        sessions.get("label-studio-1").wait()
        status = client.get("/api/status", params={"session": "label-studio-1"}).json()
        assert (status["images_learned"], status["corrections_journaled"], status["corrections_failed"]) == (2, 4, 1)
        assert "elsewhere.png': cannot read the file" in status["last_error"]
        assert client.get("/api/status").json()["corrections_journaled"] == 0  # the default session saw nothing
    assert np.array_equal(read_mask(folder / "corrected" / f"{key}.png"), updated_truth)
    rows = read_rows(folder / "corrections.csv")
    assert [(row["correction"], row["source"]) for row in rows] == [("0", "label-studio"), ("2", "label-studio")]
    assert float(rows[0]["shown_dice"]) == pytest.approx(dice(ellipse_mask((160, 200), BOX), truth))
    [box] = prompts_from_mask(other_truth, "box", box_margin=DEFAULT_BOX_MARGIN)  # the mask's box, 4 px wider per side
    assert box.box == (86.0, 56.0, 154.0, 124.0)
    assert float(rows[1]["base_dice"]) == pytest.approx(dice(ellipse_mask((160, 200), box.box), other_truth))  # 0.861


class FakeLabelStudioApi(BaseHTTPRequestHandler):
    """Label Studio's ML-backend and webhook lists of project 1, under /ls, for ``Token legacy``; records each PATCH."""

    backends: ClassVar[list[dict]] = []
    hooks: ClassVar[list[dict]] = []
    patches: ClassVar[list[tuple[str, dict]]] = []

    def _answer(self, body: object, status: int = 200) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Token legacy":
            return self._answer({"detail": "no"}, 401)
        lists = {"/ls/api/ml/?project=1": self.backends, "/ls/api/webhooks/?project=1": self.hooks}
        self._answer(lists.get(self.path, []))

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeLabelStudioApi.patches.append((self.path, body))
        self._answer(body)

    def log_message(self, *args) -> None:
        pass


def test_the_ml_webhook_gets_the_servers_key_only_when_it_is_surely_ours(caplog):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLabelStudioApi)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    auth = LabelStudioAuth(f"http://127.0.0.1:{server.server_address[1]}/ls", "legacy")
    ours = {"id": 5, "url": "http://auxol:9000/webhook", "headers": {"X-Other": "kept"}}
    someone_elses = {"id": 6, "url": "http://elsewhere/hook", "headers": {}}
    try:
        FakeLabelStudioApi.backends, FakeLabelStudioApi.hooks, FakeLabelStudioApi.patches = [], [], []
        authorizer = WebhookAuthorizer(auth, "KEY")
        authorizer.ensure("1")  # the backend is not saved yet (Label Studio's first /setup): nothing, try later
        FakeLabelStudioApi.backends = [{"url": "http://auxol:9000/"}]
        authorizer.ensure("1")  # saved, webhook not created yet
        FakeLabelStudioApi.hooks = [ours, someone_elses]
        authorizer.ensure("1")
        authorizer.ensure("1")  # settled: asks nothing again
        assert FakeLabelStudioApi.patches == [("/ls/api/webhooks/5/", {"headers": {"X-Other": "kept", "Authorization": "Bearer KEY"}})]

        FakeLabelStudioApi.patches = []
        FakeLabelStudioApi.backends = [{"url": "http://auxol:9000"}, {"url": "http://auxol:9001"}]
        WebhookAuthorizer(auth, "KEY").ensure("1")  # two backends: which is us? the key goes nowhere
        assert FakeLabelStudioApi.patches == [] and "has 2 ML backends" in caplog.text
        WebhookAuthorizer(LabelStudioAuth(auth.url, "wrong"), "KEY").ensure("1")  # refused: logged, not raised
        assert "cannot set the webhook's Authorization header (HTTP Error 401" in caplog.text
        WebhookAuthorizer(auth, None).ensure("1")  # no key: nothing to set
        WebhookAuthorizer(None, "KEY").ensure("1")  # no Label Studio token: nothing it can do
        assert FakeLabelStudioApi.patches == []
    finally:
        server.shutdown()
        server.server_close()
