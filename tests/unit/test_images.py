import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dtwin_agent.errors import ImageError, InputError
from dtwin_agent.images import downscale, load_image


def rgb_image(w=40, h=30):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return arr


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_modes_become_rgb(tmp_path, mode):
    img = Image.fromarray(rgb_image())
    if mode == "I;16":
        img = Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50)
        assert img.mode == "I;16"
    else:
        img = img.convert(mode)
    path = tmp_path / "x.png" if mode not in ("CMYK",) else tmp_path / "x.tiff"
    if mode in ("F", "I"):
        path = tmp_path / "x.tiff"
    img.save(path)
    loaded = load_image(path)
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (30, 40, 3)
    # the PIL image in memory works too
    assert load_image(img).rgb.shape == (30, 40, 3)


def test_rgba_transparent_pixels_become_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 3] = 0
    assert (load_image(arr).rgb == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(rgb_image(40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.rgb.shape == (40, 30, 3)


def test_one_pixel_and_array_inputs():
    assert load_image(np.zeros((1, 1, 3), np.uint8)).rgb.shape == (1, 1, 3)
    assert load_image(np.zeros((5, 6), np.uint8)).rgb.shape == (5, 6, 3)


def test_hash_depends_on_pixels_not_container(tmp_path):
    arr = rgb_image()
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.bmp")
    assert (
        load_image(tmp_path / "a.png").sha256
        == load_image(tmp_path / "b.bmp").sha256
        == load_image(arr).sha256
    )


def _truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(rgb_image(200, 200)).save(buf, format="JPEG")
    path = tmp_path / "trunc.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.png", "not found"),
        (lambda p: (p / "empty.png").write_bytes(b"") and p / "empty.png" or p / "empty.png", "empty"),
        (lambda p: (p / "text.png").write_text("hello, not an image") and p / "text.png", "not an image"),
        (_truncated, "truncated"),
        (lambda p: p, "directory"),
    ],
    ids=["missing", "zero-byte", "non-image", "truncated", "directory"],
)
def test_bad_files_raise_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize(
    "value",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8), 42],
    ids=["float", "two-channels", "empty", "int"],
)
def test_bad_arrays_and_types(value):
    with pytest.raises(ImageError):
        load_image(value)


def test_downscale_longest_side():
    small, scale = downscale(np.zeros((3000, 6000, 3), np.uint8), 1024)
    assert small.shape == (512, 1024, 3) and scale == pytest.approx(1024 / 6000)
    same, one = downscale(np.zeros((10, 20, 3), np.uint8), 1024)
    assert same.shape == (10, 20, 3) and one == 1.0


@pytest.mark.parametrize("path", ["do\x00g.jpg", Path("do\x00g.jpg")], ids=["str", "Path"])
def test_a_nul_byte_in_an_image_path_is_an_image_error(path):
    from dtwin_agent import segment
    from dtwin_agent.errors import ImageError

    with pytest.raises(ImageError, match="holds a NUL byte"):
        load_image(path)
    with pytest.raises(ImageError, match="holds a NUL byte"):
        segment(path, "the dog")


def test_a_nul_byte_in_the_cli_image_path_exits_2():
    from typer.testing import CliRunner

    from dtwin_agent.cli import app

    result = CliRunner().invoke(app, ["segment", "do\x00g.jpg", "the dog"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "null byte" in result.stderr.lower()


def test_a_nul_byte_in_the_config_path_is_a_config_error():
    from dtwin_agent.config import resolve_settings
    from dtwin_agent.errors import ConfigError

    with pytest.raises(ConfigError, match="is not usable"):
        resolve_settings(config_file="dtwin\x00.toml")


# ---------------------------------------------------------------- high bit depths (issue 11 item 10)

LEVELS_12BIT = (0, 1000, 2000, 4000)  # a 12-bit image in a 16-bit container: the top is 4000, not 65535


def stripes(levels=LEVELS_12BIT, width=16, height=8) -> np.ndarray:
    """Vertical stripes, one per level (uint16)."""
    return np.repeat(np.array(levels, np.uint16), width // len(levels))[None, :].repeat(height, axis=0)


def expected_8bit(levels=LEVELS_12BIT) -> list[int]:
    return [round(v * 255 / max(levels)) for v in levels]


def write_grey16(tmp_path, kind: str):
    import cv2

    grey = stripes()
    path = tmp_path / f"grey-{kind.replace(';', '_')}.{'tif' if kind == 'tiff' else 'png'}"
    if kind in ("png", "tiff"):
        cv2.imwrite(str(path), grey)  # PIL opens these as I;16
        return path
    order = {"I;16B": ">u2", "I;16L": "<u2", "I;16N": "=u2", "I;16": "<u2"}[kind]
    return Image.frombytes(kind, grey.shape[::-1], grey.astype(order).tobytes())  # in memory


@pytest.mark.parametrize("kind", ["png", "tiff", "I;16", "I;16B", "I;16L", "I;16N"])
def test_16_bit_grey_is_scaled_by_the_range_it_uses(tmp_path, kind):
    image = write_grey16(tmp_path, kind)
    if isinstance(image, Image.Image):
        assert image.mode == kind
    else:
        assert Image.open(image).mode.startswith("I;16")
    rgb = load_image(image).rgb
    assert rgb.dtype == np.uint8
    assert [int(v) for v in rgb[0, ::4, 0]] == expected_8bit()  # not 0, 4, 8, 16 (a 65535 scale)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


@pytest.mark.parametrize(
    ("fmt", "alpha"),
    [("png", False), ("png", True), ("tif", False), ("tif", True), ("ppm", False)],
    ids=["png-rgb", "png-rgba", "tiff-rgb", "tiff-rgba", "ppm-rgb"],
)
def test_16_bit_colour_files_keep_their_depth(tmp_path, fmt, alpha):
    import cv2

    red, green, blue = stripes(), stripes()[:, ::-1], np.full((8, 16), 2000, np.uint16)
    channels = [blue, green, red] + ([np.full((8, 16), 65535, np.uint16)] if alpha else [])
    path = tmp_path / f"colour16.{fmt}"
    assert cv2.imwrite(str(path), np.dstack(channels))  # OpenCV writes BGR(A)
    assert Image.open(path).mode in ("RGB", "RGBA")  # PIL alone would keep only the high byte
    rgb = load_image(path).rgb
    assert [int(v) for v in rgb[0, ::4, 0]] == expected_8bit()
    assert [int(v) for v in rgb[0, ::4, 1]] == expected_8bit()[::-1]
    assert int(rgb[0, 0, 2]) == round(2000 * 255 / 4000)


def test_16_bit_arrays_are_scaled_like_files():
    rgb = load_image(np.dstack([stripes()] * 3)).rgb
    assert [int(v) for v in rgb[0, ::4, 0]] == expected_8bit()
    assert [int(v) for v in load_image(stripes()).rgb[0, ::4, 1]] == expected_8bit()


def test_mode_i_and_8_bit_content_are_unchanged(tmp_path):
    i_image = Image.fromarray(stripes().astype(np.int32), mode="I")
    assert [int(v) for v in load_image(i_image).rgb[0, ::4, 0]] == expected_8bit()
    low = stripes(levels=(0, 10, 100, 200))  # 8-bit values in a 16-bit container: kept as they are
    assert [int(v) for v in load_image(low).rgb[0, ::4, 0]] == [0, 10, 100, 200]


def test_the_offline_proposer_finds_every_object_of_a_12_bit_png(tmp_path):
    import cv2

    from dtwin_agent import masks as mask_ops
    from dtwin_agent.config import Settings
    from dtwin_agent.perception.offline import OfflineProposer

    grey = np.full((128, 128), 300, np.uint16)
    boxes = {1200: (8, 40, 40, 88), 2600: (52, 40, 76, 88), 4000: (88, 40, 120, 88)}
    truths = []
    for level, (x0, y0, x1, y1) in boxes.items():
        grey[y0:y1, x0:x1] = level
        truth = np.zeros_like(grey, dtype=bool)
        truth[y0:y1, x0:x1] = True
        truths.append(truth)
    path = tmp_path / "scan12.png"
    cv2.imwrite(str(path), grey)
    assert Image.open(path).mode == "I;16" and grey.max() == 4000
    rgb = load_image(path).rgb
    proposals = OfflineProposer(Settings()).propose(rgb, "object")
    for index, truth in enumerate(truths):
        best = max(mask_ops.iou(truth, p.mask) for p in proposals)
        assert best >= 0.9, f"box {index}: best IoU {best:.3f}"


# ---------------------------------------------------------------- size policy (issue 11 item 11)


def test_large_images_under_the_limit_give_no_pil_warning(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL warns above 1000 px, refuses above 2000
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)  # 1600 px: PIL would warn
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path).width == 40
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_images_over_the_limit_are_refused_with_the_projects_message(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(path)  # 2500 px: over twice the limit
    refused = r"has more than 2,000 pixels \(0 Mpx\), the most decoded safely"
    with pytest.raises(ImageError, match=refused) as raised:
        load_image(path)
    assert "could be decompression bomb DOS attack" not in str(raised.value)


def test_in_memory_images_live_in_a_temporary_file_owned_by_the_run(tmp_path, monkeypatch):
    import tempfile
    import threading

    from dtwin_agent.images import image_path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rgb = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    seen = []

    def run():
        with image_path(rgb) as path:
            seen.append((path, np.array_equal(np.asarray(Image.open(path)), rgb)))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(seen) == 8 and all(whole for _, whole in seen)
    assert len({path for path, _ in seen}) == 8  # each run its own file: no shared half-written file
    assert list(tmp_path.iterdir()) == []  # all removed when the runs ended
    file = tmp_path / "photo.png"
    Image.fromarray(rgb).save(file)
    with image_path(file) as path:
        assert path == str(file.resolve())
    assert file.is_file()  # a caller's file is never removed


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_image_path_says_so(path):
    with pytest.raises(ImageError, match="the image path is empty"):
        load_image(path)
