"""``auxol serve`` on a volume, as a person uses it: upload, box one slice, correct, propagate slice by slice, download.

    python benchmarks/serve_volume.py /work/shared/data/totalseg-ct-dicom --label liver [--no-correct] [--json OUT.json]

DATA is a volume part (``images/<name>``: a DICOM series folder or a NIfTI file;
``masks/<name>.nii.gz``: its reference labels; ``labels.json``: names). Starts a real
``auxol serve`` (a subprocess on a free port, a fresh session folder, default model and
preset), uploads the volume (a DICOM folder zipped in memory first), boxes the
structure on the slice where its reference is largest (its box, widened by 2%), then
walks up from that slice and down from it, each slice prompted with
``propagate`` from the slice before, and, unless ``--no-correct``, each corrected with
the reference slice, as a person correcting every slice would. The walk stops where the
reference has no structure (the person sees it ended). Finally downloads the label
volume and scores it against the reference, aligned by their geometry (read back with
auxol's own reader), and for a DICOM series its DICOM SEG. Prints seconds per request (from request sent to answer read) and
the Dice of each propagated slice; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pydicom
from PIL import Image
from rich.console import Console
from rich.table import Table

from auxol.data.volumes import read_label_names, read_labels, read_volume, resolve_label, select_structure
from auxol.evaluate.metrics import dice
from auxol.evaluate.volume_metrics import dice_3d
from auxol.prompts import prompts_from_mask
from serve_speed import free_port, wait_until_up


def upload_bytes(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) to upload: a NIfTI file as it is, a DICOM series folder zipped (stored: the slices are compressed already)."""
    if path.is_file():
        return path.name, path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for member in sorted(path.iterdir()):
            archive.write(member, f"{path.name}/{member.name}")
    return f"{path.name}.zip", buffer.getvalue()


def png_bytes(mask: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def decode(text: str) -> np.ndarray:
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text)))) > 127


def timed(call) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    reply = call()
    seconds = time.perf_counter() - start
    if reply.status_code >= 400 and reply.status_code != 409:
        raise SystemExit(f"{reply.request.method} {reply.request.url.path} -> {reply.status_code}: {reply.text}")
    return reply, seconds


def run(image_path: Path, truth: np.ndarray, correct: bool, label_path: Path, label: int) -> dict:
    """Drive one server through the volume; returns the figures (see the module docstring)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as root:
        server = subprocess.Popen([sys.executable, "-m", "auxol", "serve", "--root", root, "--port", str(port)], stdout=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                wait_until_up(client, server)
                name, data = upload_bytes(image_path)
                reply, upload_s = timed(lambda: client.post("/api/volumes", files={"volume": (name, data)}))
                key = reply.json()["volume_id"]
                rows: list[dict] = []

                def predict(index: int, how: str, fields: dict) -> bool:
                    """Predict slice ``index`` (and correct it); False when there was nothing to propagate from."""
                    reply, predict_s = timed(lambda: client.post("/api/predict", data={"volume_id": key, "slice": str(index), **fields}))
                    if reply.status_code == 409:
                        return False
                    rows.append({"slice": index, "how": how, "predict_s": predict_s, "dice": dice(decode(reply.json()["mask"]), truth[index])})
                    if correct:
                        mask = {"mask": ("m.png", png_bytes(truth[index]))}
                        _, rows[-1]["learn_s"] = timed(lambda: client.post("/api/learn", data={"volume_id": key, "slice": str(index)}, files=mask))
                    return True

                seed = int(np.argmax(truth.sum(axis=(1, 2))))
                box = prompts_from_mask(truth[seed], "box", box_margin=0.02)[0].box
                predict(seed, "box", {"prompts": json.dumps([{"box": list(box)}])})
                for step, neighbour in ((1, "previous"), (-1, "next")):
                    index = seed + step
                    while 0 <= index < truth.shape[0] and truth[index].any() and predict(index, "propagated", {"propagate": neighbour}):
                        index += step
                reply, download_s = timed(lambda: client.get(f"/api/volumes/{key}/labels.nii.gz"))
                labels_file = Path(root) / "labels.nii.gz"
                labels_file.write_bytes(reply.content)
                downloaded = read_volume(labels_file)
                reference = select_structure(read_labels(label_path, downloaded), label)  # aligned by geometry
                seg = {}
                if image_path.is_dir():  # a DICOM series: its DICOM SEG too
                    reply, seg_s = timed(lambda: client.get(f"/api/volumes/{key}/labels.seg.dcm", params={"structure": "liver"}))
                    dataset = pydicom.dcmread(io.BytesIO(reply.content))
                    seg = {"seg_download_s": seg_s, "seg_frames": int(dataset.NumberOfFrames),
                           "seg_referenced_slices": len(dataset.ReferencedSeriesSequence[0].ReferencedInstanceSequence)}
                status = client.get("/api/status").json()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {
        "upload_s": upload_s, "upload_mb": len(data) / 2**20, "slices": rows, "download_s": download_s,
        "images_learned": status["images_learned"], "label_volume_vs_reference_dice_3d": dice_3d(downloaded.array > 0, reference), **seg,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="volume part: images/<name>, masks/<name>.nii.gz, labels.json")
    parser.add_argument("--label", default="liver", help="structure id or name")
    parser.add_argument("--no-correct", dest="correct", action="store_false", help="accept every shown mask as it is")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    image_path = next(path for path in sorted((args.data / "images").iterdir()) if not path.name.startswith("."))
    label_path = next((args.data / "masks").glob("*.nii*"))
    names_file = args.data / "labels.json"
    label = resolve_label(args.label, read_label_names(names_file) if names_file.is_file() else None, str(names_file))
    volume = read_volume(image_path)
    truth = select_structure(read_labels(label_path, volume), label)
    load = os.getloadavg()[0]
    figures = run(image_path, truth, args.correct, label_path, label) | {"label": args.label, "load_average": load}
    propagated = [row for row in figures["slices"] if row["how"] == "propagated"]
    table = Table(title=f"auxol serve on {image_path.name} ({args.label}), seconds per request, load average {load:.1f}")
    for column in ("request", "seconds", "Dice"):
        table.add_column(column, justify="left" if column == "request" else "right")
    table.add_row(f"upload ({figures['upload_mb']:.1f} MiB)", f"{figures['upload_s']:.2f}", "")
    seed_row = figures["slices"][0]
    table.add_row(f"first predict (slice {seed_row['slice']}, box)", f"{seed_row['predict_s']:.2f}", f"{seed_row['dice']:.4f}")
    if propagated:
        table.add_row(f"propagated slice (median of {len(propagated)})", f"{np.median([r['predict_s'] for r in propagated]):.2f}",
                      f"{np.mean([r['dice'] for r in propagated]):.4f} mean")
        table.add_row(f"first propagated (slice {propagated[0]['slice']})", f"{propagated[0]['predict_s']:.2f}", f"{propagated[0]['dice']:.4f}")
    learns = [row["learn_s"] for row in figures["slices"] if "learn_s" in row]
    if learns:
        table.add_row(f"correction (median of {len(learns)})", f"{np.median(learns):.3f}", "")
    table.add_row("download labels", f"{figures['download_s']:.2f}", f"{figures['label_volume_vs_reference_dice_3d']:.4f} 3-D")
    if "seg_download_s" in figures:
        table.add_row(f"download DICOM SEG ({figures['seg_frames']} frames, {figures['seg_referenced_slices']} slices referenced)",
                      f"{figures['seg_download_s']:.2f}", "")
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
