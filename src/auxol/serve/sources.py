"""Where a Label Studio task's image comes from: a path, a ``file://`` or ``data:`` URI, or a URL.

A reference is read as, in this order:

- ``data:[<type>][;base64],<data>``: the image bytes in the URI itself;
- ``file:///path``: a local file;
- ``http://`` or ``https://``: fetched; the Label Studio API key is sent only to URLs
  under the Label Studio address;
- a path to an existing local file;
- a path under Label Studio (``/data/upload/...``, ``/data/local-files/?d=...``): fetched
  from the Label Studio address given with ``--label-studio-url``.

Fetches send ``Authorization: Token <key>`` (Label Studio's legacy API token, from the
environment variable :data:`API_KEY_VARIABLE`).
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from auxol.data import read_image
from auxol.errors import DataError
from auxol.serve.encoding import decode_image

API_KEY_VARIABLE = "LABEL_STUDIO_API_KEY"
FETCH_TIMEOUT_S = 30.0


class TaskImages:
    """Reads task images.

    Args:
        label_studio_url: Label Studio's address (``http://host:8080``), for relative paths; None: none.
        api_key: Label Studio API token sent with fetches from that address; None: none.
    """

    def __init__(self, label_studio_url: str | None = None, api_key: str | None = None) -> None:
        self.label_studio_url = label_studio_url.rstrip("/") if label_studio_url else None
        self.api_key = api_key

    def read(self, reference: str) -> np.ndarray:
        """The uint8 (H, W, 3) RGB image that ``reference`` points to (see the module docstring)."""
        if reference.startswith("data:"):
            return decode_image(_data_uri_bytes(reference), "data: URI")
        if reference.startswith("file://"):
            return read_image(urllib.parse.unquote(urllib.parse.urlparse(reference).path))
        if reference.startswith(("http://", "https://")):
            return decode_image(self._fetch(reference), reference)
        if Path(reference).is_file():
            return read_image(reference)
        if self.label_studio_url is None:
            raise DataError(
                f"task image {reference!r}: no such file; if it is a Label Studio path, "
                "start the server with --label-studio-url"
            )
        url = self.label_studio_url + "/" + reference.lstrip("/")
        return decode_image(self._fetch(url), url)

    def _fetch(self, url: str) -> bytes:
        request = urllib.request.Request(url)
        if self.api_key and self.label_studio_url and url.startswith(self.label_studio_url + "/"):
            request.add_header("Authorization", f"Token {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise DataError(f"cannot fetch task image {url} (HTTP {error.code} {error.reason})") from None
        except (urllib.error.URLError, OSError) as error:
            raise DataError(f"cannot fetch task image {url} ({getattr(error, 'reason', error)})") from None


def _data_uri_bytes(uri: str) -> bytes:
    """The bytes of a ``data:`` URI (RFC 2397): base64 if marked ``;base64``, else percent-encoded."""
    header, separator, payload = uri.partition(",")
    if not separator:
        raise DataError("task image data: URI has no ',' before its data")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except binascii.Error as error:
        raise DataError(f"task image data: URI: bad base64 ({error})") from None
