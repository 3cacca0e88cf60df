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
