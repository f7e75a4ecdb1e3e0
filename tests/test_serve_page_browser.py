"""The browser page on a volume, in a real headless Chromium driven over the DevTools protocol (slow; skipped without chromium).

The server is the real subprocess of the fault tests (EllipseModel). The page uploads a
NIfTI file through its file input, a box is dragged with mouse events on the canvas, and
Segment, Submit, "Propagate up", "Propagate down" and the slice slider are clicked as a
person would; the server's record of the volume is then checked.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from test_serve_support import Server
from volume_files import write_nifti

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")]


class DevTools:
    """A minimal client of one page's DevTools WebSocket (RFC 6455 text frames, client frames masked)."""

    def __init__(self, url: str) -> None:
        address, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = address.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        reply = b""
        while not reply.endswith(b"\r\n\r\n"):
            reply += self.sock.recv(1)
        assert b" 101 " in reply.split(b"\r\n")[0], reply
        self.calls = 0

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, "DevTools closed the connection"
            data += chunk
        return data

    def _message(self) -> dict:
        payload = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length >= 126:
                length = int.from_bytes(self._read(2 if length == 126 else 8), "big")
            payload += self._read(length)
            if first & 0x80:  # the final fragment
                return json.loads(payload)

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        data, mask = json.dumps({"id": self.calls, "method": method, "params": params}).encode(), os.urandom(4)
        size = len(data)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack(">H", size))
        self.sock.sendall(header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(data)))
        while (message := self._message()).get("id") != self.calls:  # events are skipped
            pass
        assert "error" not in message, message
        return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30):
        """The value of ``expression`` once it is truthy."""
        deadline = time.monotonic() + timeout_s
        while not (value := self.js(expression)):
            assert time.monotonic() < deadline, f"{expression}; the page says: {self.js(MESSAGE)}"
            time.sleep(0.1)
        return value


MESSAGE = "document.getElementById('message').textContent"
SLICE = "document.getElementById('sliceText').textContent"
DRAG_BOX = """(() => {  // mouse events in image pixels of the 56 x 60 slice
  const view = document.getElementById('view'), rect = view.getBoundingClientRect();
  const at = (x, y) => ({clientX: rect.left + view.clientLeft + x * view.clientWidth / 56,
                         clientY: rect.top + view.clientTop + y * view.clientHeight / 60, bubbles: true});
  view.dispatchEvent(new MouseEvent('mousedown', at(12, 10)));
  view.dispatchEvent(new MouseEvent('mousemove', at(50, 50)));
  window.dispatchEvent(new MouseEvent('mouseup', at(50, 50)));
  return boxes;
})()"""
MASK_PIXELS = "(() => { const d = maskCtx.getImageData(0, 0, mask.width, mask.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 127; return n; })()"


def click(page: DevTools, button: str) -> None:
    page.js(f"document.getElementById('{button}').click()")


def test_a_volume_in_the_browser_slider_segment_correct_propagate(tmp_path):
    i, j, k = np.indices((60, 10, 56))  # a NIfTI with i toward posterior, j toward superior, k toward the right
    ball = ((i - 30) / 20) ** 2 + ((j - 4) / 3.5) ** 2 + ((k - 24) / 18) ** 2 <= 1
    hu = np.where(ball, 200, 0).astype(np.int16)
    hu[0, 0, 0] = -1000
    affine = np.array([[0, 0, 1.1, 10.0], [-0.9, 0, 0, 20.0], [0, 2.0, 0, -30.0], [0, 0, 0, 1]])
    write_nifti(tmp_path / "ball.nii.gz", hu, affine)
    server = Server(tmp_path / "sessions")
    server.start()
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json").json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "chromium did not start"
                time.sleep(0.2)
        page = DevTools(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Page.navigate", url=f"{server.url}/")
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('volumeFile')")
        document = page.call("DOM.getDocument")["root"]["nodeId"]
        volume_input = page.call("DOM.querySelector", nodeId=document, selector="#volumeFile")["nodeId"]
        page.call("DOM.setFileInputFiles", files=[str(tmp_path / "ball.nii.gz")], nodeId=volume_input)

        assert page.wait_for(SLICE) == "5 / 9 (no mask)"  # the middle slice of 10
        assert "ball.nii.gz: 10 slices of 56 x 60" in page.js(MESSAGE)
        assert page.js("document.getElementById('slice').max") == "9" and not page.js("document.getElementById('volumeBar').hidden")
        assert page.js(DRAG_BOX) == [[11, 9, 49, 49]]
        click(page, "segment")
        shown = page.wait_for(f"{MESSAGE}.startsWith('Mask:') && {MESSAGE}")
        time.sleep(0.3)  # the mask layer is drawn once its PNG is decoded
        assert f"Mask: {page.js(MASK_PIXELS)} pixels" in shown and page.js(SLICE) == "5 / 9 (shown)"
        click(page, "submit")
        page.wait_for(f"{MESSAGE}.startsWith('Correction sent')")
        assert page.js(SLICE) == "5 / 9 (corrected)"

        click(page, "propagateUp")
        assert page.wait_for(f"{SLICE}.startsWith('6 ') && {MESSAGE}.startsWith('Mask:') && {SLICE}") == "6 / 9 (shown)"
        page.js("(() => { const s = document.getElementById('slice'); s.value = 8; s.dispatchEvent(new Event('input')); })()")
        assert page.wait_for(f"{SLICE}.startsWith('8 ') && {SLICE}") == "8 / 9 (no mask)"
        click(page, "propagateUp")  # slice 8 has no mask: refused, the page stays on slice 8
        assert "slice 8 of volume" in page.wait_for(f"document.getElementById('message').className === 'error' && {MESSAGE}")
        assert page.js(SLICE) == "8 / 9 (no mask)"

        download = page.js("document.getElementById('download').href")
        assert httpx.get(download).status_code == 200
        key = download.split("/api/volumes/")[1].split("/")[0]
        states = httpx.get(f"{server.url}/api/volumes/{key}").json()["slice_states"]
        assert states == ["none"] * 5 + ["corrected", "shown"] + ["none"] * 3
    finally:
        browser.terminate()
        browser.wait(timeout=30)
        server.kill()
