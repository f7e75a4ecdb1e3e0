"""What a person waits for in ``auxol serve``: a new image's first mask, and a further prompt on it, per runtime.

    python benchmarks/serve_speed.py /work/shared/data/ddti-thyroid-us --limit 20 [--runtimes openvino,torch] [--json OUT.json]

For each runtime, starts a real ``auxol serve`` (a subprocess on a free port, a fresh
session folder, default model and preset) and, per image of DATA, times
``POST /api/predict`` with the image file and its mask's box (a new image: embedding,
decoding, AuxOL fusion, PNG answer), then ``POST /api/predict`` with the returned
``image_id`` and the box widened by 10% (an image already embedded: the prompt alone).
Nothing is learned, so every runtime sees the same requests. Prints the median and the
90th percentile of each, in seconds, from request sent to answer read.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from auxol.data import load_dataset, load_pair
from auxol.prompts import prompts_from_mask, widen_box


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(client: httpx.Client, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"auxol serve exited with status {server.returncode}")
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("auxol serve did not answer within 10 minutes")


def time_requests(runtime: str, samples: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
    """Seconds of each new-image and embedded-image request against a fresh server using ``runtime``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as session:
        command = [sys.executable, "-m", "auxol", "serve", "--root", session, "--port", str(port), "--runtime", runtime]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                wait_until_up(client, server)
                times = {"new_image": [], "embedded_image": []}
                for index, (image, mask) in enumerate([samples[0], *samples]):
                    box = prompts_from_mask(mask, "box")[0].box
                    png = io.BytesIO()
                    Image.fromarray(image).save(png, format="PNG")
                    start = time.perf_counter()
                    reply = client.post(
                        "/api/predict", files={"image": (f"{index}.png", png.getvalue(), "image/png")},
                        data={"prompts": json.dumps([{"box": list(box)}])},
                    )
                    new_image = time.perf_counter() - start
                    reply.raise_for_status()
                    wider = widen_box(box, 0.1, *mask.shape)
                    start = time.perf_counter()
                    client.post(
                        "/api/predict", data={"image_id": reply.json()["image_id"], "prompts": json.dumps([{"box": list(wider)}])}
                    ).raise_for_status()
                    embedded = time.perf_counter() - start
                    if index > 0:  # the first request warms the server up
                        times["new_image"].append(new_image)
                        times["embedded_image"].append(embedded)
                return times
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="dataset folder (images/ + masks/) or CSV list")
    parser.add_argument("--limit", type=int, default=20, help="images to send")
    parser.add_argument("--runtimes", default="openvino,torch", help="comma-separated --runtime values of auxol serve")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    samples = [load_pair(pair) for pair in load_dataset(args.data)[0].pairs[: args.limit]]
    load = os.getloadavg()[0]
    results = {runtime: time_requests(runtime, samples) for runtime in args.runtimes.split(",")}
    table = Table(title=f"auxol serve, seconds per request ({len(samples)} images, load average {load:.1f} -> {os.getloadavg()[0]:.1f})")
    for column in ("runtime", "new image median", "new image p90", "embedded image median", "embedded image p90"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    summary = {}
    for runtime, times in results.items():
        figures = {f"{kind}_{q}": float(np.percentile(values, p)) for kind, values in times.items() for q, p in (("median", 50), ("p90", 90))}
        summary[runtime] = figures
        table.add_row(runtime, *(f"{figures[key]:.3f}" for key in figures))
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "runtimes": summary}, indent=2))


if __name__ == "__main__":
    main()
