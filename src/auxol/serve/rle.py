"""Label Studio's brush RLE: the run-length code of a brush (mask) result, both ways.

Label Studio stores a brush region as ``{"format": "rle", "rle": [b0, b1, ...]}``: the
RGBA canvas of the whole image (H * W * 4 uint8 values, row by row, channel last; the
mask is the alpha channel) packed by the ``rle-pack`` package of thi.ng/umbrella
(``packages/rle-pack`` on GitHub), as bytes. The bit stream, most significant bit first:

- header: 32 bits, the number of values n; 5 bits, the word size - 1 (7: uint8 words);
  4 x 4 bits, the bit widths - 1 of the four length classes;
- chunks until n values are out: 1 bit, the kind (1: one word repeated, 0: literal
  words); 2 bits, the length class c; ``widths[c]`` bits, the length - 1; then one
  word (repeat) or ``length`` words (literal);
- zero bits that pad the stream to whole bytes.

Why here and not imported: the packages on PyPI that implement it pull in far more
than the codec (``label-studio-converter``: pandas, nltk, requests, ...;
``label-studio-sdk``: about 25 packages with a pinned OpenCV), and the format fits in
this module. The encoder writes repeat chunks only, with Label Studio's length classes
(3, 4, 8 and 16 bits); the decoder reads both kinds of chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from auxol.errors import DataError

LENGTH_BITS = (3, 4, 8, 16)
"""Bit widths of the four length classes, as Label Studio writes them."""
WORD_BITS = 8
"""Bits per value: uint8 RGBA samples."""


def encode(values: np.ndarray) -> list[int]:
    """Pack uint8 values (any shape, flattened in C order) into brush RLE bytes (ints 0..255)."""
    values = np.asarray(values, dtype=np.uint8).ravel()
    fields = [f"{values.size:032b}", f"{WORD_BITS - 1:05b}", *(f"{bits - 1:04b}" for bits in LENGTH_BITS)]
    starts = np.flatnonzero(np.diff(values.astype(np.int16), prepend=-1))  # first index of each run
    lengths = np.diff(np.append(starts, values.size))
    longest = 1 << LENGTH_BITS[-1]
    for value, length in zip(values[starts].tolist(), lengths.tolist()):
        while length > 0:
            chunk = min(length, longest)
            kind = next(index for index, bits in enumerate(LENGTH_BITS) if chunk <= 1 << bits)
            fields.append(f"1{kind:02b}{chunk - 1:0{LENGTH_BITS[kind]}b}{value:0{WORD_BITS}b}")
            length -= chunk
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big"))


class _BitReader:
    """Reads unsigned integers of given bit widths, most significant bit first, from a 0/1 array."""

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits
        self.position = 0

    def read(self, width: int, count: int = 1) -> np.ndarray:
        """The next ``count`` integers of ``width`` bits each, int64 (count,)."""
        end = self.position + width * count
        if end > self.bits.size:
            raise DataError("brush RLE: the data ends in the middle of a value")
        words = self.bits[self.position : end].reshape(count, width).astype(np.int64)
        self.position = end
        return words @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))

    def read_one(self, width: int) -> int:
        return int(self.read(width)[0])


def decode(rle: Sequence[int], expected: int | None = None) -> np.ndarray:
    """Unpack brush RLE bytes into their uint8 values, shape (n,).

    ``expected``: the number of values the caller needs; a header announcing another
    number is refused before anything is allocated for the values.
    """
    try:
        data = np.asarray(rle)
    except (ValueError, TypeError):  # ragged or not numbers
        data = np.asarray([])
    if data.ndim != 1 or not np.issubdtype(data.dtype, np.integer) or data.size < 6 or data.min() < 0 or data.max() > 255:
        raise DataError("brush RLE: expected a list of at least 6 integers in 0..255")
    reader = _BitReader(np.unpackbits(data.astype(np.uint8)))
    count = reader.read_one(32)
    if expected is not None and count != expected:
        raise DataError(f"brush RLE announces {count} values; expected {expected}")
    word = reader.read_one(5) + 1
    widths = [reader.read_one(4) + 1 for _ in range(4)]
    if word > WORD_BITS:
        raise DataError(f"brush RLE: {word}-bit values; Label Studio brushes use {WORD_BITS}-bit values")
    out = np.zeros(count, dtype=np.uint8)
    index = 0
    while index < count:
        repeat = reader.read_one(1)
        end = index + 1 + reader.read_one(widths[reader.read_one(2)])
        if end > count:
            raise DataError(f"brush RLE: a chunk runs past the {count} values the header announces")
        out[index:end] = reader.read(word) if repeat else reader.read(word, end - index)
        index = end
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Brush RLE of a bool (H, W) mask: an RGBA canvas, opaque white (255 x 4) where True, 0 elsewhere."""
    canvas = np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)
    return encode(np.repeat(canvas.ravel(), 4))


def rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """The bool (H, W) mask of brush RLE on a (height, width) image: alpha > 127 (more than half opaque).

    The RLE's header must announce the height * width * 4 values of the RGBA canvas.
    """
    if height < 1 or width < 1:
        raise DataError(f"brush RLE on a {width}x{height} image: the size must be positive")
    try:
        values = decode(rle, expected=height * width * 4)
    except DataError as error:
        raise DataError(f"{error} (a {width}x{height} RGBA image)") from None
    return values.reshape(height, width, 4)[:, :, 3] > 127
