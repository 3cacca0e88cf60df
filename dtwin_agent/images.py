"""Images in, safely: paths, PIL images or arrays become one RGB uint8 array.

EXIF orientation is applied; modes L, LA, P, RGBA, CMYK, I;16 (B/L/N), I, F and 1 are converted to
RGB (transparent pixels composited over white). Anything unreadable raises :class:`ImageError`.

High bit depths are scaled by the range the image actually uses (:func:`to_8bit`): a 12-bit scan
stored in 16 bits (values up to ~4000) fills 0..255 instead of becoming grey levels 1..15. That
holds for 16-bit greyscale PNG/TIFF (PIL's ``I;16*`` modes), 32-bit ``I`` and ``F``, uint16 arrays,
and 16-bit RGB(A) PNG, TIFF and PPM files (PIL keeps only their high byte; they are read with
OpenCV at full depth). Alpha keeps its full 16-bit scale.

Size policy: PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` (about 179 Mpx) as possible
decompression bombs; those are refused here with an :class:`ImageError` saying so, and images up to
that size are read without PIL's ``DecompressionBombWarning`` reaching stderr.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dtwin_agent.errors import ImageError, InputError

ImageLike = str | os.PathLike | Image.Image | np.ndarray


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``rgb`` is ``H x W x 3`` uint8 at the original (EXIF-corrected) size."""

    rgb: np.ndarray
    source: str
    sha256: str

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return int(self.rgb.shape[1])


def pixel_hash(rgb: np.ndarray) -> str:
    """sha256 of the decoded pixels and their shape: equal images give equal hashes, whatever the file."""
    digest = hashlib.sha256(f"{rgb.shape}".encode())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


def to_8bit(values: np.ndarray) -> np.ndarray:
    """uint8 of high-bit-depth values, scaled by the largest value the image actually uses.

    Values already within 0..255 are kept as they are (an 8-bit image in a wider container); larger
    ones are scaled so the maximum becomes 255 (as a 12-bit image in 16 bits should look); negative
    values (modes ``I``, ``F``) become 0.

    Args:
        values: any numeric array (``H x W`` or ``H x W x C``, all channels scaled together).

    """
    arr = np.asarray(values, dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if top > 255.0:
        arr = arr * (255.0 / top)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = to_8bit(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA")
    elif mode == "LA":
        img = img.convert("RGBA")
    if img.mode == "RGBA" or img.mode == "PA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint16:
        arr = _colour_and_alpha_to_8bit(arr)
    if arr.dtype != np.uint8:
        raise ImageError(f"image array must be uint8 (or uint16), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(f"image array must be H x W x 3 (or H x W x 4, or H x W), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image array is empty: shape {arr.shape}")
    if arr.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))
    return np.ascontiguousarray(arr)


def _check_path_text(image: str | os.PathLike) -> None:
    """An empty path, or one with a NUL byte (the OS refuses it with ValueError): an ImageError instead."""
    text = os.fspath(image)
    if not text.strip():  # Path("") is the current folder: say what is wrong, not "a directory: ."
        raise ImageError("the image path is empty; pass the path of an image file")
    if ("\x00" if isinstance(text, str) else b"\x00") in text:
        raise ImageError(f"image path {text!r} holds a NUL byte; pass the path of an image file")


def _colour_and_alpha_to_8bit(arr: np.ndarray) -> np.ndarray:
    """uint16 ``H x W`` or ``H x W x 3/4`` -> uint8: colour by :func:`to_8bit`, alpha by 1/257."""
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        colour = to_8bit(arr[:, :, :-1])
        alpha = np.rint(arr[:, :, -1:] / 257.0).astype(np.uint8)
        return np.concatenate([colour, alpha], axis=2)
    return to_8bit(arr)


def _is_16bit_colour(img: Image.Image) -> bool:
    """True for a file PIL reads as 8-bit colour but stores 16 bits per sample (PNG, TIFF, PPM)."""
    if img.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in getattr(img, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
        if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return True  # PPM/PGM: (rawmode, maxval)
    return False


def _read_16bit_colour(path: Path, img: Image.Image) -> Image.Image:
    """The file read at full depth with OpenCV, scaled to 8 bits, as a PIL image keeping the EXIF."""
    import cv2

    quiet = cv2.utils.logging.LOG_LEVEL_ERROR  # libtiff's notes on extra samples are not for stderr
    before = cv2.utils.logging.setLogLevel(quiet)
    try:
        data = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(before)
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] not in (3, 4):
        return img  # not what was expected: PIL's 8-bit reading stands
    order = [2, 1, 0, 3][: data.shape[2]]  # OpenCV's BGR(A) -> RGB(A)
    wide = Image.fromarray(_colour_and_alpha_to_8bit(data[:, :, order]))
    exif = img.getexif()
    if exif:
        wide.info["exif"] = exif.tobytes()
    return wide


@contextmanager
def large_images_allowed() -> Iterator[None]:
    """Open images with PIL inside this block: 89-179 Mpx images without PIL's warning on stderr.

    The project's size policy: PIL's ``DecompressionBombWarning`` (over ``Image.MAX_IMAGE_PIXELS``)
    is silenced; its ``DecompressionBombError`` (over twice that) still stops the decode and is
    reported by the caller in its own words.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open_path(path: Path) -> Image.Image:
    """Open and decode a file; 16-bit colour files are re-read at full depth (module docstring)."""
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"image path is a directory: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty (0 bytes): {path}")
    try:
        with large_images_allowed():
            img = Image.open(path)
            wide = _is_16bit_colour(img)  # before load(), which clears the tile list
            img.load()
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image file (format not recognised): {path}") from exc
    except Image.DecompressionBombError as exc:
        limit = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            f"image is too large: {path} has more than {limit:,} pixels ({limit / 1e6:.0f} Mpx), the most "
            "decoded safely (a possible decompression bomb); downscale it first"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image file is unreadable or truncated: {path} ({exc})") from exc
    return _read_16bit_colour(path, img) if wide else img


_DECODED: OrderedDict[tuple[str, int, int], LoadedImage] = OrderedDict()
_MAX_DECODED = 4
_DECODED_LOCK = threading.Lock()


def _file_version(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def load_image(image: ImageLike) -> LoadedImage:
    """Decode ``image`` (a path, a PIL image or an ``H x W x 3`` uint8 array) into RGB.

    The last few files decoded are kept per file version (path, mtime, size), so the API, the graph
    nodes and the output writers decode a photo once per run; their pixels are read-only.

    Raises:
        ImageError: for missing, empty, truncated, non-image or malformed input.
    """
    if isinstance(image, (str, os.PathLike)):
        _check_path_text(image)
        version = _file_version(Path(image))
        with _DECODED_LOCK:
            hit = _DECODED.get(version) if version else None
            if hit is not None:
                _DECODED.move_to_end(version)
                return hit
        loaded = _decode(image)
        if version is not None:
            loaded.rgb.flags.writeable = False
            with _DECODED_LOCK:
                _DECODED[version] = loaded
                while len(_DECODED) > _MAX_DECODED:
                    _DECODED.popitem(last=False)
        return loaded
    return _decode(image)


def _decode(image: ImageLike) -> LoadedImage:
    if isinstance(image, np.ndarray):
        rgb, source = _from_array(image), "array"
    elif isinstance(image, Image.Image):
        try:
            rgb = _to_rgb(ImageOps.exif_transpose(image) or image)
        except (OSError, ValueError) as exc:
            raise ImageError(f"PIL image could not be converted: {exc}") from exc
        source = getattr(image, "filename", "") or "PIL image"
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image)
        img = _open_path(path)
        try:
            rgb = _to_rgb(ImageOps.exif_transpose(img) or img)
        except (OSError, ValueError) as exc:
            raise ImageError(f"image file could not be decoded: {path} ({exc})") from exc
        source = path.name
    else:
        raise ImageError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")
    return LoadedImage(rgb=rgb, source=str(source), sha256=pixel_hash(rgb))


NO_ROOTS = (
    "no image folders are allowed here, so no image can be read: start `dtwin mcp` with --root DIR, "
    "set access.image_roots (DTWIN_ACCESS__IMAGE_ROOTS) for a LangGraph server, or pass allowed_roots "
    "to DTwinSegmentTool"
)


def check_roots(roots: Sequence[str | os.PathLike]) -> list[Path]:
    """The allowed image folders, each checked to be an existing folder (``~`` expanded).

    A typo'd root would otherwise refuse every image with a message about the image, not the folder.

    Raises:
        InputError: a root that is missing or not a folder.
    """
    folders = [Path(root).expanduser() for root in roots]
    for folder in folders:
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            raise InputError(f"allowed image folder {folder} {what} (--root / access.image_roots)")
    return folders


def confine(path: str | os.PathLike, roots: Sequence[str | os.PathLike], max_bytes: int) -> Path:
    """Resolve ``path`` (following symlinks) and check it is a file inside one of ``roots``.

    Relative paths are looked up under each root in turn. Whether a path outside the roots exists
    is never told: every such path gets the same answer. This is what the tool, the MCP server and
    the LangGraph server graphs read images through (settings ``access``).

    Raises:
        ImageError: no roots at all; an empty or unusable path; outside the roots (symlinks
            included); missing, not a file, or larger than ``max_bytes`` (inside the roots).

    """
    if not roots:
        raise ImageError(NO_ROOTS)
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""
    resolved_roots = [Path(root).expanduser().resolve() for root in roots]
    allowed = ", ".join(str(r) for r in resolved_roots)
    try:
        _check_path_text(text)
        raw = Path(text)
        try:
            raw = raw.expanduser()
        except RuntimeError:  # "~user" without such a user: an ordinary relative name
            pass
        candidates = [raw] if raw.is_absolute() else [root / raw for root in resolved_roots]
        for candidate in candidates:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in resolved_roots):
                continue
            if not resolved.exists():
                continue
            if not resolved.is_file():
                raise ImageError(f"{text} is not a file; pass the path of an image file")
            size = resolved.stat().st_size
            if size > max_bytes:
                raise ImageError(
                    f"{text} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit; "
                    "use a smaller image"
                )
            return resolved
        inside = [c for c in candidates if any(c.resolve().is_relative_to(r) for r in resolved_roots)]
    except ImageError:
        raise
    except (OSError, ValueError) as exc:  # names too long, loops of links...
        raise ImageError(f"{text!r} is not a usable path ({type(exc).__name__})") from exc
    if not inside:
        raise ImageError(
            f"{text} is outside the allowed folders ({allowed}); symbolic links are followed. "
            "Use an image inside them"
        )
    raise ImageError(f"no image at {text} (relative paths are looked up in {allowed}); pass an existing file")


@contextmanager
def image_path(image: ImageLike) -> Iterator[str]:
    """A file path for a graph state, valid for as long as the ``with`` block runs.

    Graph states carry image references, never pixels. A path is checked and given back (resolved);
    an in-memory image (PIL or array) is written as PNG into a temporary folder that this context
    owns and removes on exit: nothing is left under the cache folder or anywhere else.

    Raises:
        ImageError: if the image cannot be read (checked here, before any model is called).
    """
    loaded = load_image(image)
    if isinstance(image, (str, os.PathLike)):
        yield str(Path(image).resolve())
        return
    with tempfile.TemporaryDirectory(prefix="dtwin-image-") as folder:
        path = Path(folder) / f"{loaded.sha256[:16]}.png"
        Image.fromarray(loaded.rgb).save(path, format="PNG")
        yield str(path)


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most ``max_side`` (area interpolation).

    Returns:
        The (possibly unchanged) array and the scale factor ``new / original`` (1.0 if unchanged).
    """
    import cv2

    height, width = rgb.shape[:2]
    longest = max(height, width)
    if max_side <= 0 or longest <= max_side:
        return rgb, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale
