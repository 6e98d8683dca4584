"""Radiance RGBE (``.hdr``) reader and writer in numpy.

File layout::

    #?RADIANCE                  magic (``#?RGBE`` is accepted too)
    FORMAT=32-bit_rle_rgbe      other header lines (comments, EXPOSURE=, GAMMA=, ...) are skipped
                                a blank line ends the header
    -Y <H> +X <W>               resolution: top-to-bottom rows, left-to-right pixels (the only orientation read)
    <H scanlines>

A pixel is four bytes ``(r, g, b, e)`` sharing one exponent.  A scanline is either flat (``4 W`` bytes,
interleaved) or new-style run-length encoded: the marker ``2 2 hi lo`` with ``hi << 8 | lo = W``, then the
four channel planes one after the other, each as codes ``n <= 128`` (n literal bytes follow) or ``n > 128``
(the next byte repeats ``n - 128`` times).  Widths below 8 or above 32767 are always flat.  Flat pixels
``(1, 1, 1, n)`` are read as plain pixels, not as the pre-1991 "repeat the previous pixel" runs (OpenCV
does the same).  EXPOSURE lines are ignored, so values are the stored pixel values.

Decoding follows Radiance's own convention (bin centres)::

    value = (m + 0.5) / 256 * 2**(e - 128)   for e != 0,   0 for e == 0

OpenCV decodes ``m / 256 * 2**(e - 128)`` (bin bottoms), i.e. ``2**(e - 137)`` less per channel, at most
0.4 % of the pixel's largest channel.  Encoding truncates the mantissas (as Radiance and OpenCV do), so our
write → read round trip is within half a mantissa step, ``2**(e - 137) <= max channel / 256``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_MAGICS = (b"#?RADIANCE", b"#?RGBE")
_FORMAT = b"32-bit_rle_rgbe"
_RESOLUTION = re.compile(rb"-Y (\d+) \+X (\d+)")
_ANY_RESOLUTION = re.compile(rb"[-+][XY] \d+ [-+][XY] \d+")
_MIN_RLE_WIDTH, _MAX_RLE_WIDTH = 8, 32767
_MIN_RUN = 4  # a run code costs 2 bytes and may split a literal stretch (1 more): shorter repeats do not pay


class RGBEError(ValueError):
    """A Radiance file that cannot be read: the message names the file and what is wrong."""


def _header(data: bytes, name: str) -> tuple[int, int, int]:
    """Parse the header and resolution line: returns (H, W, offset of the first scanline)."""
    end = data.find(b"\n")
    if not data[: max(end, 0)].startswith(_MAGICS):
        raise RGBEError(f"{name}: not a Radiance file (starts with {data[:10]!r}, expected #?RADIANCE or #?RGBE)")
    fmt = None
    while True:
        offset, end = end + 1, data.find(b"\n", end + 1)
        if end < 0:
            raise RGBEError(f"{name}: header does not end with a blank line (truncated, or not a Radiance file)")
        line = data[offset:end]
        if not line:
            break
        if line.startswith(b"FORMAT="):
            fmt = line[7:].strip()
    if fmt is None:
        raise RGBEError(f"{name}: header has no FORMAT= line (expected FORMAT=32-bit_rle_rgbe)")
    if fmt != _FORMAT:
        raise RGBEError(f"{name}: FORMAT={fmt.decode(errors='replace')} is not supported, only 32-bit_rle_rgbe (RGB)")
    offset, end = end + 1, data.find(b"\n", end + 1)
    line = data[offset:end] if end >= 0 else b""
    if end < 0 or not line.strip():
        raise RGBEError(f"{name}: missing resolution line after the header (expected '-Y <height> +X <width>')")
    match = _RESOLUTION.fullmatch(line.strip())
    if match is None:
        if _ANY_RESOLUTION.fullmatch(line.strip()):
            raise RGBEError(f"{name}: orientation {line.strip().decode()!r} is not supported, only '-Y H +X W'")
        raise RGBEError(f"{name}: bad resolution line {line[:40]!r} (expected '-Y <height> +X <width>')")
    h, w = int(match[1]), int(match[2])
    if h == 0 or w == 0:
        raise RGBEError(f"{name}: empty image ({line.strip().decode()})")
    return h, w, end + 1


def _scan(data: bytes, pos: int, h: int, w: int, name: str) -> tuple[list[int], ...]:
    """Walk the scanlines without decoding them.

    Returns the rows stored flat and their byte offsets, the RLE rows, and the RLE segments covering the RLE
    rows' planes in order: source offset, length and whether the source byte repeats (else ``length`` literal
    bytes follow it).
    """
    flat_rows, flat_at, rle_rows, src, count, repeat = [], [], [], [], [], []
    n = len(data)
    rle_width = _MIN_RLE_WIDTH <= w <= _MAX_RLE_WIDTH
    marker = bytes([2, 2, w >> 8, w & 255]) if rle_width else b""

    def truncated(y: int) -> RGBEError:
        return RGBEError(f"{name}: truncated pixel data, {y} of {h} scanlines complete")

    for y in range(h):
        if pos + 4 > n:
            raise truncated(y)
        if not (rle_width and data[pos] == 2 and data[pos + 1] == 2 and data[pos + 2] < 128):
            if pos + 4 * w > n:
                raise truncated(y)
            flat_rows.append(y)
            flat_at.append(pos)
            pos += 4 * w
            continue
        if data[pos : pos + 4] != marker:
            width = data[pos + 2] << 8 | data[pos + 3]
            raise RGBEError(f"{name}: scanline {y} is run-length encoded for width {width}, the image is {w} wide")
        pos += 4
        for channel in range(4):
            x = 0
            while x < w:
                if pos >= n:
                    raise truncated(y)
                code = data[pos]
                run = code > 128
                length = code - 128 if run else code
                if length == 0 or x + length > w:
                    raise RGBEError(
                        f"{name}: bad run-length code {code} at byte {pos} (scanline {y}, channel {channel}, "
                        f"pixel {x}): a run of {length} does not fit the {w} pixels of the scanline"
                    )
                end = pos + 2 if run else pos + 1 + length
                if end > n:
                    raise truncated(y)
                src.append(pos + 1)
                count.append(length)
                repeat.append(run)
                pos = end
                x += length
        rle_rows.append(y)
    return flat_rows, flat_at, rle_rows, src, count, repeat


def decode_rgbe(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of a Radiance RGBE file into (H, W, 3) float32 linear RGB; ``name`` is used in errors."""
    h, w, pos = _header(data, name)
    flat_rows, flat_at, rle_rows, src, count, repeat = _scan(data, pos, h, w, name)
    buf = np.frombuffer(data, np.uint8)
    rgbe = np.empty((h, w, 4), np.uint8)
    if flat_rows:
        at = np.asarray(flat_at)[:, None] + np.arange(4 * w)
        rgbe[flat_rows] = buf[at].reshape(-1, w, 4)
    if rle_rows:
        count = np.asarray(count)
        start = np.cumsum(count) - count  # where each segment begins in the concatenated planes
        within = np.arange(count.sum()) - np.repeat(start, count)
        index = np.repeat(np.asarray(src), count) + np.where(np.repeat(np.asarray(repeat), count), 0, within)
        rgbe[rle_rows] = buf[index].reshape(-1, 4, w).transpose(0, 2, 1)
    e = rgbe[..., 3:].astype(np.int32)
    value = np.ldexp(rgbe[..., :3].astype(np.float32) + 0.5, e - 136)  # (m + 0.5) / 256 * 2**(e - 128)
    return np.where(e > 0, value, np.float32(0)).astype(np.float32)


def read_rgbe(path: str | Path) -> np.ndarray:
    """Read a Radiance RGBE file as (H, W, 3) float32 linear RGB (see the module docstring for the format)."""
    path = Path(path)
    return decode_rgbe(path.read_bytes(), str(path))


def _to_rgbe(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) non-negative finite floats -> (H, W, 4) uint8 shared-exponent pixels, mantissas truncated."""
    img = img.astype(np.float64)
    peak = img.max(axis=2)
    exp = np.frexp(peak)[1]  # peak = frac * 2**exp with frac in [0.5, 1), so img * 2**(8 - exp) < 256
    mantissa = np.ldexp(img, (8 - exp)[..., None]).astype(np.uint8)
    biased = exp + 128
    visible = (peak > 0) & (biased > 0)  # below 2**-128 a pixel is black
    out = np.zeros((*img.shape[:2], 4), np.uint8)
    out[visible, :3] = mantissa[visible]
    out[visible, 3] = biased[visible]
    return out


def _literals(plane: np.ndarray, a: int, b: int, out: bytearray) -> None:
    """Append ``plane[a:b]`` as literal codes of at most 128 bytes each."""
    for c in range(a, b, 128):
        d = min(c + 128, b)
        out.append(d - c)
        out += plane[c:d].tobytes()


def _encode_plane(plane: np.ndarray, out: bytearray) -> None:
    """Append the run-length codes of one channel of one scanline, (W,) uint8."""
    starts = np.flatnonzero(np.r_[True, plane[1:] != plane[:-1]])
    lengths = np.diff(np.r_[starts, len(plane)])
    literal_from = 0  # first pixel not yet written
    for start, length in zip(starts.tolist(), lengths.tolist()):
        if length >= _MIN_RUN:
            _literals(plane, literal_from, start, out)
            for done in range(0, length, 127):
                out += bytes([128 + min(127, length - done), int(plane[start])])
            literal_from = start + length
    _literals(plane, literal_from, len(plane), out)


def encode_rgbe(img: np.ndarray) -> bytes:
    """Encode (H, W, 3) linear RGB as a run-length encoded Radiance file; negative values are stored as 0.

    Scanlines narrower than 8 or wider than 32767 pixels are stored flat, as the format requires.
    """
    if img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
        raise ValueError(f"encode_rgbe needs a non-empty (H, W, 3) image, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("encode_rgbe: the image holds NaN or infinite values, which RGBE cannot store")
    if img.max() >= 2.0**127:
        raise ValueError(f"encode_rgbe: {img.max():g} exceeds the largest RGBE value (2**127)")
    h, w = img.shape[:2]
    rgbe = _to_rgbe(np.clip(img, 0, None))
    out = bytearray(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {h} +X {w}\n".encode())
    if not _MIN_RLE_WIDTH <= w <= _MAX_RLE_WIDTH:
        return bytes(out + rgbe.tobytes())
    marker = bytes([2, 2, w >> 8, w & 255])
    for row in rgbe:
        out += marker
        for channel in range(4):
            _encode_plane(row[:, channel], out)
    return bytes(out)


def write_rgbe(path: str | Path, img: np.ndarray) -> None:
    """Write (H, W, 3) linear RGB as a run-length encoded Radiance RGBE file."""
    Path(path).write_bytes(encode_rgbe(img))
