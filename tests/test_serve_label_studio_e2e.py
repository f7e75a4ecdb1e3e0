"""``auxol serve`` against a real Label Studio 1.23.2, driven through its REST API the way a user sets it up.

Label Studio runs from its own virtual environment ``.venv-ls`` (its dependencies clash
with auxol's; ``scripts/setup-label-studio.sh`` makes it, ``.ci/run`` runs that script)
on 127.0.0.1 with its default token settings, plus the two variables that let it talk
to a backend on a local address (``ML_BLOCK_LOCAL_IP=false``,
``SSRF_PROTECTION_ENABLED=false``). A user and a personal access token (PAT) are made
as a person does: log in, create the token. ``auxol serve`` is the real command (the
embedded LiteMedSAM) with an API key, fetching task images with the PAT. The test then
follows the README: create a project, import phantom images, give three of the four
tasks a rectangle, connect the backend with basic auth (the key as password), retrieve
predictions (auxol gives the ML webhook Label Studio created its ``Authorization``
header by itself), submit brush annotations, and checks what both sides stored.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from auxol.data.phantoms import phantom_stream
from auxol.evaluate.metrics import dice
from auxol.prompts import prompts_from_mask
from auxol.serve.rle import mask_to_rle, rle_to_mask

pytestmark = pytest.mark.slow

LABEL_STUDIO = Path(__file__).resolve().parents[1] / ".venv-ls" / "bin" / "label-studio"
USER, PASSWORD, API_KEY = "clinician@auxol.test", "auxol-e2e-Pass-1", "e2e-api-key"
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image"><Label value="Lesion" background="#f00"/></BrushLabels>
  <RectangleLabels name="box" toName="image" smart="true"><Label value="Lesion"/></RectangleLabels>
</View>"""
N_TASKS = 4  # the last one has no rectangle: it must get no prediction


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the server exited ({process.returncode}); log: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout_s} s; log: {log.read_text()[-3000:]}")


class LabelStudioUser:
    """A logged-in browser session of Label Studio (cookies + CSRF), to create a personal access token as a person does."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def csrf(self) -> str:
        return next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")

    def login(self) -> None:
        self.opener.open(self.url + "/user/login/").read()
        form = urllib.parse.urlencode({"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": self.csrf()}).encode()
        request = urllib.request.Request(self.url + "/user/login/", data=form, headers={"Referer": self.url + "/user/login/"})
        self.opener.open(request).read()
        assert any(cookie.name == "sessionid" for cookie in self.cookies), "login failed"

    def create_token(self) -> str:
        request = urllib.request.Request(self.url + "/api/token/", data=b"{}", method="POST", headers={
            "Content-Type": "application/json", "X-CSRFToken": self.csrf(), "Referer": self.url + "/"})
        return json.loads(self.opener.open(request).read())["token"]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """The address of a fresh Label Studio, its log, and a PAT of its user."""
    if not LABEL_STUDIO.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{LABEL_STUDIO} is missing: .ci/run must run scripts/setup-label-studio.sh")
        pytest.skip(f"no Label Studio in {LABEL_STUDIO.parent.parent}: run scripts/setup-label-studio.sh")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data / "label-studio.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABEL_STUDIO", "DJANGO"))}
    env.update(ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false", LABEL_STUDIO_HOST=url,
               LABEL_STUDIO_BASE_DATA_DIR=str(data / "base"))  # nothing written under ~/.local/share
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data / "data"), "--username", USER, "--password", PASSWORD],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=data)
    try:
        wait_for(url + "/health", process, 600, log)
        user = LabelStudioUser(url)
        user.login()
        yield {"url": url, "log": log, "pat": user.create_token()}
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def auxol_server(label_studio, tmp_path_factory):
    """``auxol serve`` (the command, LiteMedSAM) with an API key, reading task images from Label Studio with the PAT."""
    root = tmp_path_factory.mktemp("auxol-sessions")
    port = free_port()
    log = root.parent / "auxol.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "LABEL_STUDIO_API_KEY": label_studio["pat"],
           "AUXOL_API_KEY": API_KEY}
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "auxol", "serve", "--root", str(root), "--port", str(port),
             "--label-studio-url", label_studio["url"]], stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/health", process, 300, log)
        yield {"url": url, "root": root, "log": log}
    finally:
        process.terminate()
        process.wait(timeout=60)


def rectangle(mask: np.ndarray) -> dict:
    """The 2%-margin box of ``mask`` as a Label Studio rectangle (percent of the image)."""
    height, width = mask.shape
    [prompt] = prompts_from_mask(mask, "box", box_margin=0.02)
    x1, y1, x2, y2 = prompt.box
    return {"type": "rectanglelabels", "from_name": "box", "to_name": "image", "original_width": width, "original_height": height,
            "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                      "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": ["Lesion"]}}


def test_label_studio_predicts_with_auxol_and_auxol_learns_the_annotations(label_studio, auxol_server, tmp_path):
    started = time.monotonic()
    ls = httpx.Client(base_url=label_studio["url"], timeout=120)
    access = ls.post("/api/token/refresh/", json={"refresh": label_studio["pat"]}).json()["access"]
    ls.headers["Authorization"] = f"Bearer {access}"
    project = ls.post("/api/projects/", json={"title": "thyroid", "label_config": CONFIG}).json()
    phantoms = phantom_stream(N_TASKS, seed=3, size=256)
    files = [(f"file{i}", (f"p{i}.png", cv2.imencode(".png", p.image[:, :, ::-1])[1].tobytes(), "image/png"))
             for i, p in enumerate(phantoms)]
    imported = ls.post(f"/api/projects/{project['id']}/import", files=files)
    assert imported.status_code == 201, imported.text
    tasks = sorted(ls.get("/api/tasks/", params={"project": project["id"], "page_size": 100}).json()["tasks"], key=lambda t: t["id"])
    assert len(tasks) == N_TASKS and all(t["data"]["image"].startswith("/data/upload/") for t in tasks)
    for task, phantom in zip(tasks[:-1], phantoms):  # the rectangles a person drew (the prompts)
        box = ls.post("/api/predictions/", json={"task": task["id"], "result": [rectangle(phantom.mask)], "model_version": "boxes"})
        assert box.status_code == 201, box.text

    # Connect the backend with basic auth (any user, the key as password), as Settings > Model does.
    backend = ls.post("/api/ml/", json={"project": project["id"], "url": auxol_server["url"], "title": "auxol",
                                        "auth_method": "BASIC_AUTH", "basic_auth_user": "label-studio",
                                        "basic_auth_pass": API_KEY, "is_interactive": True})
    assert backend.status_code == 201, backend.text
    [hook] = [h for h in ls.get("/api/webhooks/", params={"project": project["id"]}).json() if h["url"].endswith("/webhook")]
    assert "Authorization" not in (hook["headers"] or {})  # Label Studio creates it without the key

    retrieved = ls.post("/api/dm/actions/", params={"id": "retrieve_tasks_predictions", "project": project["id"]},
                        json={"selectedItems": {"all": True, "excluded": []}})
    assert retrieved.status_code == 200, retrieved.text
    deadline = time.monotonic() + 30  # auxol gives the webhook its key (at /setup or /predict, in the background)
    while (headers := ls.get(f"/api/webhooks/{hook['id']}/").json()["headers"] or {}).get("Authorization") != f"Bearer {API_KEY}":
        assert time.monotonic() < deadline, headers
        time.sleep(0.5)
    session = f"label-studio-{project['id']}"
    shown = {}
    for task, phantom in zip(tasks, phantoms):
        predictions = [p for p in ls.get("/api/predictions/", params={"task": task["id"]}).json() if p["model_version"] != "boxes"]
        if task is tasks[-1]:
            assert predictions == []  # no rectangle, no prediction
            continue
        [prediction] = predictions
        assert prediction["model_version"] == "auxol-litemedsam-cpu-0"
        [region] = prediction["result"]
        mask = rle_to_mask(region["value"]["rle"], region["original_height"], region["original_width"])
        shown[task["id"]] = dice(mask, phantom.mask)
    assert min(shown.values()) > 0.6, shown  # LiteMedSAM on the phantoms: ~0.75 (it leaves out their faint rim)

    for task, phantom in zip(tasks, phantoms):  # submit the corrected masks (brush), the last one on an image never predicted
        brush = {"type": "brushlabels", "from_name": "tag", "to_name": "image", "original_width": 256, "original_height": 256,
                 "value": {"format": "rle", "rle": mask_to_rle(phantom.mask), "brushlabels": ["Lesion"]}}
        created = ls.post(f"/api/tasks/{task['id']}/annotations/", json={"result": [brush]})
        assert created.status_code == 201, created.text
    auxol = httpx.Client(base_url=auxol_server["url"], headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    deadline = time.monotonic() + 120
    while (status := auxol.get("/api/status", params={"session": session}).json())["learning_queue"] or (
            status["corrections_journaled"] < N_TASKS):
        assert time.monotonic() < deadline and not status["corrections_failed"], status
        time.sleep(0.5)
    assert (status["images_learned"], status["corrections_journaled"], status["corrections_failed"]) == (N_TASKS, N_TASKS, 0)
    assert auxol.get("/api/status").json()["corrections_journaled"] == 0  # the default session saw nothing
    assert auxol.post("/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 200
    assert httpx.post(auxol_server["url"] + "/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 401
    versions = auxol.get("/versions").json()["versions"]
    assert versions == [f"auxol-litemedsam-cpu-{N_TASKS}"]  # stored predictions are now of an older state

    # What Label Studio waits for (1 s at most): an update of an annotation, sent as its webhook sends it.
    update = {"action": "ANNOTATION_UPDATED", "task": tasks[-1], "project": {"id": project["id"], "label_config": CONFIG},
              "annotation": {"id": 99, "result": [brush]}}
    latencies = []
    for _ in range(3):
        sent = time.monotonic()
        assert auxol.post("/webhook", json=update).json()["status"] == "queued"
        latencies.append(time.monotonic() - sent)
    assert max(latencies) < 1.0, latencies

    ls_log = label_studio["log"].read_text()
    assert not re.search(r"(?i)webhook.*(timed? ?out|error)|Read timed out", ls_log), ls_log[-3000:]
    auxol_log = auxol_server["log"].read_text()
    unauthorized = [line for line in auxol_log.splitlines() if '" 401' in line]
    assert "Traceback" not in auxol_log and len(unauthorized) == 1, auxol_log[-3000:]  # only the request above without the key
    print(f"Label Studio e2e: shown Dice {np.round(list(shown.values()), 3)}, {N_TASKS} annotations learned, webhook "
          f"answers in {1000 * max(latencies):.0f} ms at most, {time.monotonic() - started:.0f} s after both servers were up")
