"""Images entering the page: uploads stored in the session's folder, picks confined to the roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.scenes import write_scene

from dtwin_agent.errors import ImageError, InputError
from dtwin_agent.integrations.ui.intake import images_under, inside, pick_image, store_upload, stored_name

MB = 2**20


@pytest.mark.parametrize(
    ("original", "image_format", "expected"),
    [
        ("kitchen.jpg", "JPEG", "upload-kitchen.jpg"),
        ("../../etc/passwd.png", "PNG", "upload-passwd.png"),
        ("a b/../../c.png", "PNG", "upload-c.png"),
        ("..", "PNG", "upload-image.png"),
        ("photo.png\x00.sh", "TIFF", "upload-photo_png.tif"),
        ("x" * 300 + ".webp", "WEBP", f"upload-{'x' * 40}.webp"),
    ],
)
def test_stored_names_never_leave_the_folder(original: str, image_format: str, expected: str) -> None:
    name = stored_name(original, image_format)
    assert name == expected and "/" not in name and not name.startswith(".")


def test_upload_is_moved_into_the_session_folder(tmp_path: Path) -> None:
    received = (
        write_scene(tmp_path / "gradio" / "scene.png") if (tmp_path / "gradio").mkdir() is None else None
    )
    folder = tmp_path / "sessions" / "s1"
    stored = store_upload(received, folder, max_bytes=MB, original_name="../../scene.png")
    assert stored == folder / "upload-scene.png" and stored.read_bytes()[:4] == b"\x89PNG"
    assert not received.exists()  # nothing is left in the web server's folder
    assert [p.name for p in folder.iterdir()] == ["upload-scene.png"]  # no partial file


@pytest.mark.parametrize(
    ("content", "max_bytes", "message"),
    [
        (b"not an image at all", MB, "not an image file"),
        (b"", MB, "empty"),
        ("truncated", MB, "unreadable or truncated"),
        (b"x" * 2048, 1024, "over the 0.0 MiB limit"),
    ],
)
def test_bad_uploads_are_refused_and_removed(
    tmp_path: Path, content: bytes, max_bytes: int, message: str
) -> None:
    received = tmp_path / "upload.png"
    if content == "truncated":
        whole = write_scene(tmp_path / "whole.png").read_bytes()
        content = whole[: len(whole) // 2]
    received.write_bytes(content)
    folder = tmp_path / "sessions" / "s1"
    with pytest.raises(ImageError, match=message):
        store_upload(received, folder, max_bytes=max_bytes)
    assert not received.exists() and not folder.exists()


def test_pick_is_confined_to_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    scene = write_scene(root / "scene.png")
    outside = write_scene(tmp_path / "outside.png")
    (root / "escape.png").symlink_to(outside)
    (root / "text.png").write_text("not an image")
    assert pick_image("scene.png", [root], max_bytes=MB) == scene.resolve()
    assert pick_image(str(scene), [root], max_bytes=MB) == scene.resolve()
    for path in (str(outside), "../outside.png", "escape.png"):
        with pytest.raises(InputError, match="outside the allowed folders"):
            pick_image(path, [root], max_bytes=MB)
    with pytest.raises(InputError, match="no image at"):
        pick_image("missing.png", [root], max_bytes=MB)
    with pytest.raises(InputError, match="empty"):
        pick_image("", [root], max_bytes=MB)
    with pytest.raises(InputError, match="over the"):
        pick_image("scene.png", [root], max_bytes=10)
    with pytest.raises(ImageError, match="not an image file"):
        pick_image("text.png", [root], max_bytes=MB)
    with pytest.raises(InputError, match="no folders to pick images from"):
        pick_image("scene.png", [], max_bytes=MB)


def test_images_under_lists_images_inside_the_roots_only(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write_scene(root / "b.png")
    write_scene(root / "sub" / "a.JPG")
    write_scene(root / ".hidden" / "c.png")
    (root / "notes.txt").write_text("x")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_scene(outside / "d.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "link.png").symlink_to(outside / "d.png")
    found = [p.relative_to(root).as_posix() for p in images_under([root])]
    assert found == ["b.png", "sub/a.JPG"]
    assert len(images_under([root], limit=1)) == 1
    assert inside(root / "b.png", [root]) and not inside(root / "link.png", [root])
    assert not inside("\x00bad", [root])  # a path that cannot resolve is not inside
