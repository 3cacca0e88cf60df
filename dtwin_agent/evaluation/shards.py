"""Twin shards: the digital twins of a dataset, one JSON line per image, in hash-sharded files.

Layout of an ``OUT`` folder written by ``dtwin twins build``::

    OUT/twins.json                       manifest: dataset, root, splits, shard count, the settings
                                         that shape a twin (proposer, spatial, labeller)
    OUT/twins-00003-of-00016.jsonl       rows of the images whose id hashes to shard 3

A row is :class:`TwinRow`: ``image_id`` (the image path relative to the dataset root), ``image``,
``twin`` (the :class:`~dtwin_agent.twin.DigitalTwin` as JSON: masks as COCO RLE at the original
size), ``components``, ``seconds``, ``worker``, ``error`` and ``error_kind``. Rows are appended with
one fsynced write each (:mod:`dtwin_agent.evaluation.jsonl`), so a killed build loses at most the
images in flight, and a later row for an image replaces an earlier one. An image is *finished* when
its last row holds a twin, or an error of kind ``data`` / ``method`` (the image's own failure);
``provider`` errors are never finished: the next run builds those images again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dtwin_agent.errors import InputError
from dtwin_agent.evaluation.jsonl import JsonlWriter, iter_lines, read_jsonl
from dtwin_agent.outputs.files import write_text
from dtwin_agent.twin import DigitalTwin

MANIFEST = "twins.json"
SHARDS_VERSION = 1
DEFAULT_SHARDS = 16
#: error kinds that count as finished (the image's own failure, redone only with --retry-errors)
FINISHED_ERRORS = ("data", "method")


class TwinRow(BaseModel):
    """One image's row in a twin shard."""

    image_id: str
    image: str
    twin: DigitalTwin | None = None
    components: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0
    worker: str | None = None
    error: str | None = None
    error_kind: str | None = None


def image_id(path: str | Path, root: str | Path) -> str:
    """The id of an image in twin shards: its path relative to ``root`` (POSIX), else the absolute path."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def shard_of(key: str, num_shards: int) -> int:
    """The shard holding ``key``: sha1 of the id modulo the shard count (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % num_shards


def twin_settings(settings: Any) -> dict[str, Any]:
    """The settings that shape a twin, which a resumed build must keep.

    The proposer, spatial and labeller settings, and the twin format's version (its T_i and S_i
    wording).
    """
    from dtwin_agent.perception import resolve_settings_for_proposer
    from dtwin_agent.twin import TWIN_VERSION

    perception = resolve_settings_for_proposer(settings).perception.model_dump(
        mode="json", exclude={"device"}
    )
    vlm = settings.models.vlm
    return {
        "twin_version": TWIN_VERSION,
        "perception": perception,
        "spatial": settings.spatial.model_dump(mode="json"),
        "semantics": settings.semantics.model_dump(mode="json", exclude={"concurrency"}),
        "vlm": vlm if isinstance(vlm, str) or vlm is None else type(vlm).__name__,
    }


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [f"{path} ({old!r} there, {new!r} now)"]


class TwinShards:
    """The twin shards of one ``OUT`` folder: append rows, list finished images, read twins by id."""

    def __init__(self, out_dir: str | Path, manifest: dict[str, Any]):
        self.dir = Path(out_dir)
        self.manifest = manifest
        self.num_shards = int(manifest["num_shards"])
        self._writers: dict[int, JsonlWriter] = {}
        self._index: dict[str, tuple[Path, int]] | None = None

    # ------------------------------------------------------------------------------ opening

    @classmethod
    def create_or_resume(cls, out_dir: str | Path, manifest: dict[str, Any]) -> TwinShards:
        """Open ``out_dir`` for a build described by ``manifest`` (dataset, root, splits, settings).

        A new folder gets the manifest (with ``num_shards``, default 16); an existing one must
        hold twins of the same dataset built with the same twin settings.

        Raises:
            InputError: ``out_dir`` is a file, or holds another dataset's twins or twins built with
                other settings (the message names the settings that differ).
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file, not a folder")
        path = out / MANIFEST
        if path.is_file():
            old = cls._read_manifest(path)
            if old.get("dataset") != manifest["dataset"]:
                raise InputError(
                    f"{out} holds twins of dataset {old.get('dataset')!r}, not {manifest['dataset']!r}; "
                    "use another --out"
                )
            diff = _differences(old.get("settings", {}), manifest.get("settings", {}))
            if diff:
                raise InputError(
                    f"{out} holds twins built with other settings: {'; '.join(diff[:3])}"
                    f"{' ...' if len(diff) > 3 else ''}; use another --out or the same settings"
                )
            splits = sorted(set(old.get("splits", [])) | set(manifest.get("splits", [])))
            merged = {**old, "splits": splits}
        else:
            merged = {"version": SHARDS_VERSION, "num_shards": DEFAULT_SHARDS, **manifest}
        out.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(merged, indent=2, sort_keys=True) + "\n")
        return cls(out, merged)

    @classmethod
    def open(cls, out_dir: str | Path) -> TwinShards:
        """Open built twin shards for reading.

        Raises:
            InputError: when ``out_dir`` holds no ``twins.json``.
        """
        path = Path(out_dir) / MANIFEST
        if not path.is_file():
            raise InputError(
                f"no twin shards in {out_dir} (no {MANIFEST}); build them with `dtwin twins build`"
            )
        return cls(out_dir, cls._read_manifest(path))

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is not a readable JSON manifest: {exc}") from exc
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("num_shards"), int)
            or data["num_shards"] < 1
        ):
            raise InputError(f"{path}: not a twin shards manifest (no num_shards)")
        return data

    # ------------------------------------------------------------------------------ rows

    def shard_path(self, index: int) -> Path:
        """The file of shard ``index``."""
        return self.dir / f"twins-{index:05d}-of-{self.num_shards:05d}.jsonl"

    def shard_paths(self) -> list[Path]:
        """The shard files that exist."""
        return [p for p in (self.shard_path(i) for i in range(self.num_shards)) if p.is_file()]

    def rows(self, *, repair: bool = False) -> dict[str, dict[str, Any]]:
        """The last row of every image, as JSON dicts (``image_id -> row``)."""
        out: dict[str, dict[str, Any]] = {}
        for path in self.shard_paths():
            out.update(read_jsonl(path, "image_id", repair=repair))
        return out

    def finished(self, *, retry_errors: bool = False) -> set[str]:
        """Ids of the finished images (cuts half-written last lines so appends stay valid).

        An image is finished when its last row holds a twin, or (without ``retry_errors``) an
        error of a kind in :data:`FINISHED_ERRORS`.
        """
        done = set()
        for key, row in self.rows(repair=True).items():
            if row.get("twin") is not None and not row.get("error"):
                done.add(key)
            elif not retry_errors and row.get("error_kind") in FINISHED_ERRORS:
                done.add(key)
        return done

    def append(self, row: TwinRow | dict[str, Any]) -> None:
        """Append one row durably to its shard."""
        data = row.model_dump(mode="json") if isinstance(row, TwinRow) else dict(row)
        index = shard_of(str(data["image_id"]), self.num_shards)
        writer = self._writers.get(index)
        if writer is None:
            writer = self._writers[index] = JsonlWriter(self.shard_path(index))
        writer.write(data)
        self._index = None

    def close(self) -> None:
        """Close the shard files opened for appending."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    # ------------------------------------------------------------------------------ reading twins

    def index(self) -> dict[str, tuple[Path, int]]:
        """``image_id -> (shard file, byte offset)`` of the last row of each image holding a twin."""
        if self._index is None:
            index: dict[str, tuple[Path, int]] = {}
            for path in self.shard_paths():
                for _, offset, line in iter_lines(path):
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    key = str(row.get("image_id"))
                    if row.get("twin") is not None and not row.get("error"):
                        index[key] = (path, offset)
                    else:
                        index.pop(key, None)
            self._index = index
        return self._index

    def twin(self, key: str) -> DigitalTwin:
        """The twin of image ``key``.

        Raises:
            InputError: when the shards hold no twin for it (missing, or its build failed).
        """
        where = self.index().get(key)
        if where is None:
            raise InputError(f"no twin for image {key!r} in {self.dir}; build it with `dtwin twins build`")
        path, offset = where
        with path.open("rb") as fh:
            fh.seek(offset)
            row = json.loads(fh.readline())
        return DigitalTwin.model_validate(row["twin"])
