"""How much one request may ask of the server: its body, its images' pixels, its volumes' voxels, its prompts.

Every limit is checked before the costly step it guards (the body while it is read, an
image's size from its file header before decoding, a brush RLE's announced length
against width x height before allocating, a volume's voxels from its NIfTI header or
DICOM headers and a zip's unpacked size from its directory before unpacking), and
breaking one is a
:class:`LimitError`, answered 413 with a message that names the limit and its option.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from auxol.errors import DataError


class LimitError(DataError):
    """A request asks for more than a configured limit allows."""


@dataclass(frozen=True)
class Limits:
    """The bounds of one request.

    Attributes:
        max_pixels: most pixels (width x height) of an image or mask, decoded or brush RLE.
        max_prompts: most prompts (boxes, point sets) in one request or Label Studio task.
        max_body_bytes: most bytes of one request body.

    A volume derives its bounds from these: each slice at most ``max_pixels``, the whole
    volume at most :attr:`max_voxels`, an uploaded zip at most :attr:`max_unpacked_bytes`
    once unpacked.
    """

    max_pixels: int = 64_000_000
    max_prompts: int = 64
    max_body_bytes: int = 128 * 1024 * 1024

    def check_pixels(self, width: int, height: int, what: str) -> None:
        """Raise :class:`LimitError` if a ``width`` x ``height`` ``what`` has more than ``max_pixels``."""
        if width * height > self.max_pixels:
            raise LimitError(
                f"{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
                f"{self.max_pixels / 1e6:g} megapixels (--max-megapixels)"
            )

    @property
    def max_voxels(self) -> int:
        """Most voxels of an uploaded volume: 4 x ``max_pixels`` (256 M at the defaults, 1 GiB as float32)."""
        return 4 * self.max_pixels

    @property
    def max_unpacked_bytes(self) -> int:
        """Most bytes of an uploaded zip's members once unpacked: 4 x ``max_body_bytes`` (512 MiB at the defaults)."""
        return 4 * self.max_body_bytes

    def check_volume(self, slices: int, rows: int, columns: int, what: str) -> None:
        """Raise :class:`LimitError` if a volume of ``slices`` x ``rows`` x ``columns`` has a slice over ``max_pixels`` or more than :attr:`max_voxels`."""
        self.check_pixels(columns, rows, f"{what}: a slice")
        if slices * rows * columns > self.max_voxels:
            raise LimitError(
                f"{what} is {columns}x{rows}x{slices} = {slices * rows * columns / 1e6:.0f} M voxels, over the limit of "
                f"4 x {self.max_pixels / 1e6:g} M (--max-megapixels)"
            )

    def check_unpacked(self, size: int, what: str) -> None:
        """Raise :class:`LimitError` if ``size`` unpacked bytes of ``what`` are more than :attr:`max_unpacked_bytes`."""
        if size > self.max_unpacked_bytes:
            raise LimitError(
                f"{what} unpacks to {size / 2**20:.0f} MiB, over the limit of 4 x {self.max_body_bytes / 2**20:g} MiB (--max-body-mb)"
            )

    def check_prompts(self, count: int, what: str = "request") -> None:
        """Raise :class:`LimitError` if ``count`` prompts are more than ``max_prompts``."""
        if count > self.max_prompts:
            raise LimitError(f"{what} has {count} prompts, over the limit of {self.max_prompts} (--max-prompts)")

    def check_prompts_on(self, count: int, height: int, width: int, what: str) -> None:
        """Raise :class:`LimitError` if ``count`` prompts on a ``width`` x ``height`` image need more than 4 x ``max_pixels`` logits.

        The foundation model answers each prompt with float32 logits over the whole image,
        so this bounds those at 16 bytes x ``max_pixels`` (1 GiB at the defaults).
        """
        if count * height * width > 4 * self.max_pixels:
            raise LimitError(
                f"{what}: {count} prompts on a {width}x{height} image need {count * height * width / 1e6:.0f} megapixels "
                f"of logits, over the limit of 4 x {self.max_pixels / 1e6:g} (--max-megapixels; or send fewer prompts)"
            )

    def body_error(self) -> str:
        return f"request body over the limit of {self.max_body_bytes / 2**20:g} MiB (--max-body-mb)"

    def check_image_header(self, data: bytes, name: str) -> None:
        """Check an image file's size from its header, without decoding its pixels.

        Raises:
            DataError: ``name`` is not an image file the header reader knows.
            LimitError: the image has more than ``max_pixels``.
        """
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:  # reads the header only
                    width, height = image.size
        except Image.DecompressionBombError:  # Pillow's own bound, 2 x 89.5 megapixels
            bound = 2 * Image.MAX_IMAGE_PIXELS / 1e6
            raise LimitError(
                f"{name} has more than {bound:.0f} megapixels, over the limit of {self.max_pixels / 1e6:g} megapixels (--max-megapixels)"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise DataError(f"{name}: cannot read image (not an image, or corrupt)") from None
        self.check_pixels(width, height, name)
