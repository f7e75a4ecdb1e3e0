"""Bad input, limits and the API key: every bad request is a 4xx ``{"error"}``, the server stays up and small.

The battery runs against a real server subprocess (:class:`test_serve_support.Server`,
body limit 2 MiB) so that its peak memory can be read; a local HTTP listener stands for
an internal service that a task image URL must never make the server contact.
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from struct import pack

import httpx
import numpy as np
import pytest

from auxol.serve.rle import encode, mask_to_rle
from conftest import disk_image
from test_serve_support import Server, client_for, open_sessions, png
from volume_files import nifti_announcing, zip_of

CONFIG = """<View><Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image"><Label value="Lesion"/></BrushLabels></View>"""
BOX = json.dumps([{"box": [55, 45, 125, 115]}])


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header announces ``width`` x ``height`` gray pixels (its data is one short row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


class Listener(BaseHTTPRequestHandler):
    """An internal service: records every request it gets."""

    hits: list[str] = []

    def do_GET(self) -> None:
        Listener.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(png(disk_image()[0]))

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def listener():
    Listener.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def brush(width: int, height: int, rle: list[int]) -> dict:
    return {"type": "brushlabels", "from_name": "tag", "to_name": "image", "original_width": width,
            "original_height": height, "value": {"format": "rle", "rle": rle, "brushlabels": ["Lesion"]}}


def webhook(image: str, *regions: dict) -> dict:
    return {"action": "ANNOTATION_CREATED", "task": {"id": 1, "data": {"image": image}},
            "annotation": {"id": 1, "result": list(regions)}, "project": {"id": 1, "label_config": CONFIG}}


def test_a_battery_of_bad_requests(tmp_path, listener):
    image, truth = disk_image()
    (tmp_path / "files").mkdir(parents=True)
    (tmp_path / "files" / "scan.png").write_bytes(png(image))
    allowed = str(tmp_path / "files" / "scan.png")
    huge_rle = encode(np.zeros(0, np.uint8))
    huge_rle[:4] = list((10**9).to_bytes(4, "big"))
    server = Server(tmp_path, "2")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            start_rss = server.peak_rss_mb()
            key = client.post("/api/predict", data={"prompts": BOX}, files={"image": ("s.png", png(image))}).json()["image_id"]

            def predict(prompts=BOX, **data):
                return client.post("/api/predict", data={"prompts": prompts, "image_id": key, **data})

            def learn(mask_bytes, image_id=key):
                return client.post("/api/learn", data={"image_id": image_id}, files={"mask": ("m.png", mask_bytes)})

            def ls_predict(image_ref, **extra):
                task = {"id": 5, "data": {"image": image_ref}, "predictions": [{"result": [{"type": "rectanglelabels",
                        "value": {"x": 10, "y": 10, "width": 50, "height": 50}}]}]}
                return client.post("/predict", json={"project": "1.1", "tasks": [task], "label_config": CONFIG, **extra})

            assert learn(png(truth)).status_code == 202  # uses up the prediction

            def chunks():  # a multipart body of 3 MiB, without Content-Length
                yield b'--x\r\nContent-Disposition: form-data; name="mask"; filename="m.png"\r\n\r\n'
                for _ in range(3):
                    yield b"x" * 2**20

            cases = {
                "junk body": (client.post("/api/predict", content=b"\x00\xffjunk", headers={"content-type": "text/plain"}), 400),
                "junk multipart": (client.post("/api/predict", content=b"--x\r\njunk", headers={"content-type": "multipart/form-data; boundary=x"}), (400, 422)),
                "no prompts field": (client.post("/api/predict", data={"image_id": key}), 400),
                "prompts not JSON": (predict("{"), 400),
                "prompts not a list": (predict('{"box": [1, 2, 3, 4]}'), 400),
                "a point of one number": (predict('[{"points": [[5]]}]'), 400),
                "a point of three numbers": (predict('[{"points": [[5, 5, 5]]}]'), 400),
                "a box of three numbers": (predict('[{"box": [1, 2, 3]}]'), 400),
                "a box of strings": (predict('[{"box": ["a", "b", "c", "d"]}]'), 400),
                "a NaN box": (predict('[{"box": [NaN, 1, 2, 3]}]'), 400),
                "label 7": (predict('[{"points": [[5, 5]], "labels": [7]}]'), 400),
                "a prompt outside": (predict('[{"box": [0, 0, 5000, 10]}]'), 400),
                "1000 boxes": (predict(json.dumps([{"box": [55, 45, 125, 115]}] * 1000)), 413),
                "64 boxes on a 7000x7000 image": (client.post("/api/predict", data={"prompts": json.dumps([{"box": [5, 5, 60, 60]}] * 64)},
                                                               files={"image": ("wide.png", png(np.zeros((7000, 7000), np.uint8)))}), 413),
                "20000x20000 PNG": (client.post("/api/predict", data={"prompts": BOX},
                                                files={"image": ("big.png", png_header_only(20000, 20000))}), 413),
                "not an image": (client.post("/api/predict", data={"prompts": BOX}, files={"image": ("x.png", b"GIF89a junk")}), 400),
                "unknown image id": (predict(image_id="0123456789abcdef"), 404),
                "path as image id": (predict(image_id="../../etc/passwd"), 404),
                "bad session name": (predict(session="../x"), 400),
                "body over the limit": (client.post("/api/predict", content=b"x" * (3 * 2**20), headers={"content-type": "text/plain"}), 413),
                "chunked body over the limit": (client.post("/api/learn", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}), 413),
                "correction without prediction": (learn(png(truth[::-1].copy())), 409),
                "mask of another size": (learn(png(truth[:50])), 400),
                "20000x20000 mask": (learn(png_header_only(20000, 20000)), 413),
                "9000x8000 mask": (learn(png_header_only(9000, 8000)), 413),
                "LS tasks not a list": (client.post("/predict", json={"tasks": "all", "label_config": CONFIG}), 422),
                "LS junk JSON": (client.post("/predict", content=b"{", headers={"content-type": "application/json"}), 422),
                "LS config not XML": (client.post("/setup", json={"project": "1", "schema": "<View"}), 400),
                "LS file outside the roots": (ls_predict("file:///etc/passwd"), 400),
                "LS missing file outside the roots": (ls_predict("file:///etc/no-such-file"), 400),
                "LS SSRF to a local service": (ls_predict(listener + "/internal/secret.png"), 400),
                "LS SSRF with a path": (ls_predict(listener + "/data/upload/1/x.png"), 400),
                "webhook SSRF": (client.post("/webhook", json=webhook(listener + "/x.png", brush(4, 4, mask_to_rle(np.ones((4, 4), bool))))), 400),
                "webhook RLE announcing 10^9 values": (client.post("/webhook", json=webhook(allowed, brush(10, 10, huge_rle))), 400),
                "webhook 10^10 pixel brush": (client.post("/webhook", json=webhook(allowed, brush(100_000, 100_000, huge_rle))), 413),
                "webhook RLE of junk": (client.post("/webhook", json=webhook(allowed, brush(4, 4, [[1], "x"]))), 400),
                "webhook without a brush": (client.post("/webhook", json=webhook(allowed)), 400),
                "zip of 64 MiB of zeros": (client.post("/api/volumes", files={"volume": ("bomb.zip", zip_of({"a.dcm": bytes(64 * 2**20)}))}), 413),
                "zip climbing out": (client.post("/api/volumes", files={"volume": ("up.zip", zip_of({"../../x.dcm": b"x"}))}), 400),
                "NIfTI announcing 2.7e13 voxels": (client.post("/api/volumes", files={"volume": ("huge.nii", nifti_announcing(tmp_path / "s.nii", (30000,) * 3))}), 413),
                "unknown volume id": (client.get("/api/volumes/0123456789abcdef/labels.nii.gz"), 404),
                "unknown route": (client.get("/api/nothing"), 404),
                "wrong method": (client.get("/api/predict"), 405),
            }
            for name, (reply, expected) in cases.items():
                assert reply.status_code in (expected if isinstance(expected, tuple) else (expected,)), (name, reply.text)
                assert isinstance(reply.json()["error"], str) and reply.json()["error"], name
                assert client.get("/api/health").status_code == 200, name  # still up
            peak = server.peak_rss_mb()
            log = "".join(server.log)
    finally:
        server.stop()
    print(f"{len(cases)} bad requests, all 4xx; peak RSS {start_rss:.0f} MiB at start, {peak:.0f} MiB after")
    assert Listener.hits == []  # never contacted
    assert peak < start_rss + 400  # measured: +~100 MiB (the 1000-box request used to take 12 GB)
    assert "POST /api/predict -> 400: prompts: expected JSON like" in log  # 4xx are logged with route and reason
    assert "POST /predict -> 400: task image 'file:///etc/passwd': not an allowed source" in log
    assert "Traceback" not in log
    assert "1000 prompts, over the limit of 64 (--max-prompts)" in cases["1000 boxes"][0].json()["error"]
    assert "big.png has more than 179 megapixels, over the limit of 64 megapixels" in cases["20000x20000 PNG"][0].json()["error"]
    assert "m.png is 9000x8000 = 72.0 megapixels, over the limit of 64 megapixels" in cases["9000x8000 mask"][0].json()["error"]
    assert "64 prompts on a 7000x7000 image need 3136 megapixels of logits" in cases["64 boxes on a 7000x7000 image"][0].json()["error"]
    assert "over the limit of 2 MiB (--max-body-mb)" in cases["body over the limit"][0].json()["error"]
    messages = {cases[name][0].json()["error"].split("':")[1] for name in ("LS file outside the roots", "LS missing file outside the roots")}
    assert len(messages) == 1  # the same whether the file exists or not


def test_the_api_key_guards_every_route_but_health(tmp_path):
    with client_for(open_sessions(tmp_path), api_key="s3cret") as client:
        basic = "Basic " + base64.b64encode(b"label-studio:s3cret").decode()
        for route in ("/api/status", "/api/sessions", "/", "/versions"):
            none, wrong = client.get(route), client.get(route, headers={"Authorization": "Bearer nope"})
            assert none.status_code == wrong.status_code == 401, route
            assert "no API key" in none.json()["error"] and wrong.json()["error"] == "wrong API key"
            assert none.headers["www-authenticate"] == 'Basic realm="auxol"'  # a browser asks for it once
            assert client.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200, route
            assert client.get(route, headers={"Authorization": basic}).status_code == 200, route
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).status_code == 401
        assert client.post("/api/predict", data={"prompts": BOX}).status_code == 401
        assert client.get("/health").status_code == client.get("/api/health").status_code == 200
