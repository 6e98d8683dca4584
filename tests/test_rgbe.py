"""Radiance RGBE reader / writer: round trips with OpenCV, flat scanlines, malformed files."""
import cv2
import numpy as np
import pytest

from semkt_plugin.reproduction.rgbe import RGBEError, decode_rgbe, encode_rgbe, read_rgbe, write_rgbe

HEADER = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n"


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) float32 radiance over ten decades, with constant stretches longer than one run code (127)."""
    rng = np.random.default_rng(seed)
    img = np.exp(rng.normal(0, 5, (h, w, 3))).astype(np.float32)
    img[: h // 2, 10 : min(w, 210)] = [0.25, 3.0, 1e-3]
    img[-1] = 0
    return img


def _within_rgbe_step(got: np.ndarray, want: np.ndarray, steps: float) -> None:
    """|got - want| <= steps mantissa steps, a step being 2**(e - 136) <= (largest channel) / 128."""
    peak = want.max(axis=2, keepdims=True)
    assert (np.abs(got.astype(np.float64) - want) <= steps * peak / 128 + 1e-45).all()


@pytest.mark.parametrize("width", [300, 5])  # 5 < 8: stored flat
def test_our_writer_round_trips_through_both_readers(tmp_path, width):
    img = _image(6, width)
    path = tmp_path / "ours.hdr"
    write_rgbe(path, img)
    ours = read_rgbe(path)
    assert ours.shape == img.shape and ours.dtype == np.float32
    _within_rgbe_step(ours, img, 0.5)  # truncating encoder, bin-centre decoder
    opencv = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    _within_rgbe_step(opencv, img, 1.0)  # OpenCV decodes bin bottoms
    assert (ours[-1] == 0).all()


@pytest.mark.parametrize("compression", [cv2.IMWRITE_HDR_COMPRESSION_RLE, cv2.IMWRITE_HDR_COMPRESSION_NONE])
def test_opencv_writer_to_our_reader(tmp_path, compression):
    img = _image(7, 200, seed=1)
    path = tmp_path / "opencv.hdr"
    assert cv2.imwrite(str(path), img[..., ::-1].copy(), [cv2.IMWRITE_HDR_COMPRESSION, compression])
    ours = read_rgbe(path)
    _within_rgbe_step(ours, img, 1.0)
    opencv = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    half_step = ours - opencv  # the only difference: (m + 0.5) vs m, the same for the three channels
    assert (half_step >= 0).all() and (half_step.max(axis=2) == half_step.min(axis=2)).all()
    _within_rgbe_step(ours, opencv, 0.5)


def test_flat_and_rle_scanlines_mixed():
    rgbe = np.random.default_rng(2).integers(1, 256, (3, 9, 4)).astype(np.uint8)
    rgbe[1, :, 3] = 0  # exponent 0: black whatever the mantissas
    planes = rgbe[2].T  # (4, 9): one literal code of 9 bytes per channel
    rle_row = bytes([2, 2, 0, 9]) + b"".join(bytes([9]) + p.tobytes() for p in planes)
    data = HEADER + b"-Y 3 +X 9\n" + rgbe[0].tobytes() + rgbe[1].tobytes() + rle_row
    got = decode_rgbe(data)
    want = (rgbe[..., :3] + 0.5) / 256 * 2.0 ** (rgbe[..., 3:].astype(float) - 128)
    want[1] = 0
    np.testing.assert_array_equal(got, want.astype(np.float32))


def _raises(tmp_path, data: bytes, *fragments: str) -> None:
    path = tmp_path / "bad.hdr"
    path.write_bytes(data)
    with pytest.raises(RGBEError) as err:
        read_rgbe(path)
    for fragment in (str(path), *fragments):
        assert fragment in str(err.value)


def test_malformed_headers(tmp_path):
    _raises(tmp_path, b"P6\n3 3\n255\n", "not a Radiance file")
    _raises(tmp_path, b"#?RADIANCE\n\n-Y 1 +X 1\n\x80\x80\x80\x81", "no FORMAT")
    _raises(tmp_path, b"#?RADIANCE\nFORMAT=32-bit_rle_xyze\n\n-Y 1 +X 1\n", "32-bit_rle_xyze is not supported")
    _raises(tmp_path, b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", "blank line")
    _raises(tmp_path, HEADER, "missing resolution line")
    _raises(tmp_path, HEADER + b"-Y 2 X 2\n", "bad resolution line")
    _raises(tmp_path, HEADER + b"+Y 2 +X 2\n", "orientation '+Y 2 +X 2' is not supported")


def test_truncated_file_names_complete_scanlines(tmp_path):
    data = encode_rgbe(_image(5, 40))
    _raises(tmp_path, data[:-10], "truncated", "4 of 5 scanlines")
    flat = encode_rgbe(_image(5, 4))
    _raises(tmp_path, flat[: len(flat) - 4 * 4 - 1], "3 of 5 scanlines")


def test_rle_run_overflowing_the_scanline(tmp_path):
    row = bytes([2, 2, 0, 8]) + bytes([128 + 9, 7])  # a run of 9 in an 8 pixel scanline
    _raises(tmp_path, HEADER + b"-Y 1 +X 8\n" + row, "run of 9 does not fit the 8 pixels", "scanline 0")
    wrong_width = bytes([2, 2, 0, 9]) + bytes([128 + 9, 7]) * 4
    _raises(tmp_path, HEADER + b"-Y 1 +X 8\n" + wrong_width, "encoded for width 9, the image is 8 wide")


def test_writer_rejects_what_rgbe_cannot_hold():
    with pytest.raises(ValueError, match="NaN"):
        encode_rgbe(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        encode_rgbe(np.zeros((2, 2), np.float32))


def test_reads_a_shipped_real_view_as_opencv_does():
    from semkt_plugin.reproduction.brackets import real_view_paths

    path = real_view_paths("test")[0]
    ours = read_rgbe(path)
    assert ours.shape == (192, 192, 3) and np.isfinite(ours).all() and ours.min() > 0
    _within_rgbe_step(ours, cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64), 0.5)
