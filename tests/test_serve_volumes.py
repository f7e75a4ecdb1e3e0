"""``auxol serve`` on volumes: upload a NIfTI file or a zipped DICOM series, predict, correct and propagate slice by slice, download the labels.

On the stand-in EllipseModel (a box prompt answers the ellipse inscribed in it), with
synthetic volumes of known geometry made here; the restart test runs the real server
subprocess of the fault tests and kills it with SIGKILL.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import zipfile
from pathlib import Path

import cv2
import httpx
import nibabel
import numpy as np
import pytest

from auxol.serve.limits import Limits
from test_serve_support import Server, client_for, decode_png, ellipse_mask, open_sessions, png, wait_learned
from volume_files import dicom_affine, nifti_announcing, write_dicom_series, write_nifti, zip_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A NIfTI stored in another layout than the axial one: i toward posterior, j toward superior, k toward the patient's right.
FILE_AFFINE = np.array([[0, 0, 1.1, 10.0], [-0.9, 0, 0, 20.0], [0, 2.0, 0, -30.0], [0, 0, 0, 1]])
FILE_SHAPE = (30, 10, 28)


def ball_in_file_layout() -> np.ndarray:
    """bool (i, j, k) ellipsoid of the NIfTI's own grid; it lies on axial slices (j) 1 to 7."""
    i, j, k = np.indices(FILE_SHAPE)
    return ((i - 15) / 10) ** 2 + ((j - 4) / 3.5) ** 2 + ((k - 12) / 9) ** 2 <= 1


def nifti_bytes(tmp_path: Path) -> bytes:
    """The ball as a CT in HU (0 outside, 200 inside, one voxel of air): a .nii.gz file's bytes."""
    hu = np.where(ball_in_file_layout(), 200, 0).astype(np.int16)
    hu[0, 0, 0] = -1000
    return write_nifti(tmp_path / "ball.nii.gz", hu, FILE_AFFINE).read_bytes()


def axial(file_array: np.ndarray, index: int) -> np.ndarray:
    """Axial slice ``index`` of an array on FILE_AFFINE: rows = i (anterior to posterior), columns = k reversed (right to left)."""
    return file_array[:, index, ::-1]


def bbox(mask: np.ndarray) -> list[int]:
    rows, columns = np.nonzero(mask)
    return [int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())]


def upload(client, name: str, data: bytes, **fields):
    return client.post("/api/volumes", data=fields, files={"volume": (name, data, "application/octet-stream")})


def predict_slice(client, volume_id: str, index: int, box=None, propagate=None):
    data = {"volume_id": volume_id, "slice": str(index)}
    data |= {"prompts": json.dumps([{"box": box}])} if box is not None else {"propagate": propagate}
    return client.post("/api/predict", data=data)


def correct_slice(client, volume_id: str, index: int, mask: np.ndarray):
    return client.post("/api/learn", data={"volume_id": volume_id, "slice": str(index)}, files={"mask": ("m.png", png(mask), "image/png")})


def slice_image(client, volume_id: str, index: int) -> np.ndarray:
    body = client.get(f"/api/volumes/{volume_id}/slices/{index}").json()
    return cv2.imdecode(np.frombuffer(base64.b64decode(body["image"]), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def labels_nifti(client, volume_id: str) -> nibabel.Nifti1Image:
    reply = client.get(f"/api/volumes/{volume_id}/labels.nii.gz")
    assert reply.status_code == 200, reply.text
    return nibabel.Nifti1Image.from_bytes(gzip.decompress(reply.content))


def zipped(folders: dict[str, Path]) -> bytes:
    """A zip of the files of ``folders``, each under its prefix (a series zipped as a folder)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for prefix, folder in folders.items():
            for path in sorted(folder.iterdir()):
                archive.write(path, f"{prefix}/{path.name}")
    return buffer.getvalue()


def test_nifti_volume_predict_correct_propagate_and_download_in_the_input_geometry(tmp_path):
    ball = ball_in_file_layout()
    with client_for(open_sessions(tmp_path / "sessions")) as client:
        reply = upload(client, "ball.nii.gz", nifti_bytes(tmp_path))
        assert reply.status_code == 201, reply.text
        body = reply.json()
        key = body["volume_id"]
        assert (body["slices"], body["rows"], body["columns"]) == (10, 30, 28)
        assert np.allclose(body["spacing_mm"], [2.0, 0.9, 1.1]) and body["window"] == [-160.0, 240.0]  # CT by its air
        assert upload(client, "ball.nii.gz", nifti_bytes(tmp_path)).status_code == 200  # the same volume again

        truth = slice_image(client, key, 4)[..., 0] > 165  # 200 HU -> 230, 0 HU -> 102 in the window
        assert np.array_equal(truth, axial(ball, 4))  # the slice as radiologists view it, whatever the file's layout

        box = bbox(truth)
        shown = predict_slice(client, key, 4, box=box)
        assert shown.status_code == 200, shown.text
        assert np.array_equal(decode_png(shown.json()["mask"]), ellipse_mask(truth.shape, box))
        learned = correct_slice(client, key, 4, truth)
        assert learned.status_code == 202 and learned.json()["slice"] == 4, learned.text

        up = predict_slice(client, key, 5, propagate="previous")  # from the corrected slice 4
        assert up.status_code == 200, up.text
        (used,) = up.json()["prompts_used"]
        x1, y1, x2, y2 = used["box"]
        assert [x1, y1, x2, y2] != box and x1 <= box[0] and y1 <= box[1] and x2 >= box[2] and y2 >= box[3]  # the truth's box, widened
        assert x2 - x1 <= box[2] - box[0] + 2 and y2 - y1 <= box[3] - box[1] + 2
        up_mask = decode_png(up.json()["mask"])
        assert np.array_equal(up_mask, ellipse_mask(truth.shape, tuple(round(v) for v in used["box"])))
        down = predict_slice(client, key, 3, propagate="next")
        assert down.status_code == 200 and down.json()["prompts_used"] == up.json()["prompts_used"]

        details = client.get(f"/api/volumes/{key}").json()
        assert details["slice_states"][3:6] == ["shown", "corrected", "shown"] and details["slices_corrected"] == 1
        assert details["slice_states"].count("none") == 7
        assert [v["volume_id"] for v in client.get("/api/volumes").json()["volumes"]] == [key]

        labels = labels_nifti(client, key)
        assert np.allclose(labels.affine, FILE_AFFINE) and labels.shape == FILE_SHAPE and labels.get_data_dtype() == np.uint8
        data = np.asarray(labels.dataobj)
        assert np.array_equal(data[:, 4, :], ball[:, 4, :].astype(np.uint8))  # the corrected slice, voxel for voxel
        assert np.array_equal(axial(data, 5), up_mask) and axial(data, 3).sum() == up_mask.sum()  # the shown ones
        assert data[:, [0, 1, 2, 6, 7, 8, 9], :].sum() == 0
        assert wait_learned(client)["images_learned"] == 1


def test_zipped_dicom_series_is_one_volume_with_its_geometry(tmp_path):
    hu = np.full((6, 24, 20), -100.0)
    hu[:, 6:18, 4:14] = 60
    write_dicom_series(tmp_path / "series", hu)
    with client_for(open_sessions(tmp_path / "sessions")) as client:
        reply = upload(client, "ct.zip", zipped({"ct": tmp_path / "series"}))
        assert reply.status_code == 201, reply.text
        body = reply.json()
        key = body["volume_id"]
        assert (body["slices"], body["rows"], body["columns"], body["modality"]) == (6, 24, 20, "CT")
        assert np.allclose(body["spacing_mm"], [2.5, 0.8, 0.7])
        expected = np.round((np.clip(hu[2], -160, 240) + 160) * 255 / 400).astype(np.uint8)
        assert np.array_equal(slice_image(client, key, 2), np.repeat(expected[..., None], 3, axis=2))

        truth = hu[2] > 0
        assert predict_slice(client, key, 2, box=bbox(truth)).status_code == 200
        assert correct_slice(client, key, 2, truth).status_code == 202
        labels = labels_nifti(client, key)
        assert np.allclose(labels.affine, dicom_affine(hu.shape))  # (column, row, slice), as dcm2niix writes a series
        data = np.asarray(labels.dataobj)
        assert data.shape == (20, 24, 6) and np.array_equal(data[:, :, 2], truth.T) and data.sum() == truth.sum()


def test_bad_volume_requests_answer_4xx_naming_the_problem_and_the_server_stays_up(tmp_path, caplog, monkeypatch):
    hu = np.full((6, 24, 20), -100.0)
    hu[:, 6:18, 4:14] = 60
    write_dicom_series(tmp_path / "one", hu)
    write_dicom_series(tmp_path / "two", hu, origin=(-100.0, -80.0, 0.0))
    write_dicom_series(tmp_path / "gap", hu, skip=(3,))
    monkeypatch.chdir(tmp_path)  # a traversal would land here
    caplog.set_level(logging.WARNING, logger="auxol.serve")
    with client_for(open_sessions(tmp_path / "sessions"), limits=Limits(max_body_bytes=2 * 2**20)) as client:
        key = upload(client, "ct.zip", zipped({"ct": tmp_path / "one"})).json()["volume_id"]
        cases = [
            (upload(client, "junk.zip", b"not a zip at all"), 400, "junk.zip: not a zip file"),
            (upload(client, "up.zip", zip_of({"../../evil.dcm": b"x"})), 400, "member '../../evil.dcm' points outside the archive"),
            (upload(client, "abs.zip", zip_of({"/tmp/evil.dcm": b"x"})), 400, "member '/tmp/evil.dcm' points outside the archive"),
            (upload(client, "bomb.zip", zip_of({"a.dcm": bytes(16 * 2**20)})), 413, "bomb.zip unpacks to 16 MiB, over the limit of 4 x 2 MiB"),
            (upload(client, "mixed.zip", zipped({"a": tmp_path / "one", "b": tmp_path / "two"})), 400, "mixed.zip: mixed series (2 SeriesInstanceUIDs)"),
            (upload(client, "gap.zip", zipped({"g": tmp_path / "gap"})), 400, "gap.zip: uneven slice spacing"),
            (upload(client, "text.zip", zip_of({"notes.txt": b"hello"})), 400, "text.zip: no DICOM images"),
            (upload(client, "scan.txt", b"hello"), 400, "scan.txt: not a volume upload"),
            (upload(client, "bad.nii.gz", b"\x1f\x8b junk"), 400, "bad.nii.gz: cannot read NIfTI volume"),
            (upload(client, "huge.nii", nifti_announcing(tmp_path / "small.nii", (30000, 30000, 30000))), 413, "huge.nii: a slice is 30000x30000"),
            (upload(client, "ct.zip", zipped({"ct": tmp_path / "one"}), window="240,-160"), 400, "window: expected finite LOW,HIGH"),
            (predict_slice(client, key, 6, box=[1, 1, 5, 5]), 400, f"slice 6 outside 0..5 of volume {key}"),
            (predict_slice(client, key, -1, box=[1, 1, 5, 5]), 400, "slice -1 outside 0..5"),
            (predict_slice(client, "0123456789abcdef", 0, box=[1, 1, 5, 5]), 404, "unknown volume id '0123456789abcdef'"),
            (predict_slice(client, "../default", 0, box=[1, 1, 5, 5]), 404, "unknown volume id '../default'"),
            (client.get("/api/volumes/0123456789abcdef/labels.nii.gz"), 404, "unknown volume id"),
            (client.get(f"/api/volumes/{key}/slices/9"), 400, "slice 9 outside 0..5"),
            (client.post("/api/predict", data={"volume_id": key, "prompts": "[]"}), 400, "needs 'slice'"),
            (predict_slice(client, key, 2, propagate="previous"), 409, "slice 1 of volume"),
            (predict_slice(client, key, 0, propagate="previous"), 400, "slice 0 of volume " + key + " has no previous slice"),
            (predict_slice(client, key, 2, propagate="above"), 422, "propagate"),
            (client.post("/api/predict", data={"volume_id": key, "slice": "2", "prompts": "[]", "propagate": "next"}), 400, "give prompts"),
            (correct_slice(client, key, 2, np.ones((5, 5), bool)), 400, "corrected mask is 5x5 pixels but image"),
            (correct_slice(client, key, 2, hu[2] > 0), 409, "no shown prediction waiting"),
        ]
        for reply, status, message in cases:
            assert reply.status_code == status, (message, reply.text)
            assert message in reply.json()["error"], reply.json()["error"]
        assert client.get("/api/health").json() == {"status": "ok"}
        assert [v["volume_id"] for v in client.get("/api/volumes").json()["volumes"]] == [key]  # nothing half-added
    assert not list(tmp_path.rglob("evil.dcm")) and not Path("/tmp/evil.dcm").exists()
    logged = [record.getMessage() for record in caplog.records]
    assert sum("POST /api/volumes -> 4" in line for line in logged) == 11 and any("points outside the archive" in line for line in logged)


def test_a_corrected_slice_survives_kill_9(tmp_path):
    server = Server(tmp_path / "sessions")
    ball = ball_in_file_layout()
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            key = upload(client, "ball.nii.gz", nifti_bytes(tmp_path)).json()["volume_id"]
            truth = axial(ball, 4)
            assert predict_slice(client, key, 4, box=bbox(truth)).status_code == 200
            assert correct_slice(client, key, 4, truth).status_code == 202
        server.kill()  # right after the 2xx
        volumes = tmp_path / "sessions" / "default" / "volumes"
        (volumes / ".upload-k9x" / "series").mkdir(parents=True)  # what a kill during an upload leaves
        (volumes / ".upload-k9x" / "series" / "0001.dcm").write_bytes(b"half a file")
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get(f"/api/volumes/{key}").json()["slice_states"][4] == "corrected"
            assert sorted(path.name for path in volumes.iterdir()) == [key]  # the scratch is gone, the volume kept
            data = np.asarray(labels_nifti(client, key).dataobj)
            assert np.array_equal(data[:, 4, :], ball[:, 4, :].astype(np.uint8)) and data.sum() == ball[:, 4, :].sum()
            status = wait_learned(client)
            assert status["corrections_journaled"] == 1 and status["images_learned"] == 1 and status["corrections_failed"] == 0
            assert predict_slice(client, key, 5, propagate="previous").status_code == 200  # from the slice corrected before the kill
    finally:
        server.kill()


def test_the_page_offers_a_volume_with_a_slice_slider_and_propagation(tmp_path):
    with client_for(open_sessions(tmp_path)) as client:
        page = client.get("/").text
    for needed in ('id="volumeFile"', 'id="slice"', "/api/volumes", "labels`", ".nii.gz", ".seg.dcm", '"propagate"', "volume_id"):
        assert needed in page, needed


def test_a_dicom_series_labels_download_as_a_dicom_seg_referencing_its_slices(tmp_path):
    import pydicom

    hu = np.full((6, 24, 20), -100.0)
    hu[:, 6:18, 4:14] = 60
    files = write_dicom_series(tmp_path / "series", hu)
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    with client_for(open_sessions(tmp_path / "sessions")) as client:
        key = upload(client, "ct.zip", zipped({"ct": tmp_path / "series"})).json()["volume_id"]
        empty = client.get(f"/api/volumes/{key}/labels.seg.dcm")
        assert empty.status_code == 400 and "no slice has a mask yet" in empty.json()["error"]
        truth = hu[2] > 0
        assert predict_slice(client, key, 2, box=bbox(truth)).status_code == 200
        assert correct_slice(client, key, 2, truth).status_code == 202
        reply = client.get(f"/api/volumes/{key}/labels.seg.dcm", params={"structure": "liver"})
        assert reply.status_code == 200, reply.text
        seg = pydicom.dcmread(io.BytesIO(reply.content))
        assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "liver"
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
        assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 6  # every slice of the series
        assert int(seg.NumberOfFrames) == 1 and np.array_equal(seg.pixel_array > 0, truth)  # the one corrected slice
        bad = client.get(f"/api/volumes/{key}/labels.seg.dcm", params={"structure": "x\n(0008,0060)"})
        assert bad.status_code == 400 and "structure" in bad.json()["error"]
        nifti_key = upload(client, "ball.nii.gz", nifti_bytes(tmp_path)).json()["volume_id"]
        refused = client.get(f"/api/volumes/{nifti_key}/labels.seg.dcm")
        assert refused.status_code == 400 and "is not a DICOM series" in refused.json()["error"]
    assert not list((tmp_path / "sessions" / "default" / "volumes").glob(".upload-*"))  # the scratch folders are gone
