"""Read MCPServer and MCPPool manifests from YAML files, as `kubectl apply -f` would take them.

Both local runtimes read manifests through here: `nmcp up` and `nmcp gateway --runtime local`.

A path is a file or a directory (its `*.yaml` / `*.yml` / `*.json` files, not recursive, hidden files and
editor back-ups skipped). A file may hold several documents. Each document is validated and
defaulted against the CRD schema by `nmcp.model.schema.validate`; a bad document becomes a `Problem`
naming the file, the document's position and the field, and every other document still loads.

`fingerprint(paths)` is what the live-reload watcher compares: the names, sizes and modification
times of the files a load would read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nmcp.model import schema

SUFFIXES = (".yaml", ".yml", ".json")  # JSON is YAML too
KINDS = ("MCPServer", "MCPPool")
TOO_DEEP = "nested too deeply to read (hundreds of levels; a manifest needs a handful)"


@dataclass(frozen=True)
class Manifest:
    """One valid document: `obj` has the CRD's defaults applied and a namespace set."""

    kind: str
    namespace: str
    name: str
    obj: dict[str, Any]
    source: str
    document: int  # 1-based position of the document in its file

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def where(self) -> str:
        return f"{self.source} (document {self.document})"


@dataclass(frozen=True)
class Problem:
    """Why one document (or a whole file) was not loaded."""

    source: str
    document: int | None  # None: the file as a whole (unreadable, not YAML)
    field: str
    message: str
    subject: str = ""  # "MCPServer default/time" when the document says what it is

    def __str__(self) -> str:
        where = self.source if self.document is None else f"{self.source} (document {self.document})"
        subject = f" {self.subject}:" if self.subject else ""
        return f"{where}:{subject} {self.field}: {self.message}"


@dataclass(frozen=True)
class LoadResult:
    manifests: tuple[Manifest, ...]
    problems: tuple[Problem, ...]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind == kind]


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named by `paths`, directories expanded, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if _is_manifest_file(p))
        elif path.exists():
            files.append(path)
    return files


def _is_manifest_file(path: Path) -> bool:
    # Editors write hidden swap and back-up files next to the ones being edited.
    return path.is_file() and path.suffix in SUFFIXES and not path.name.startswith((".", "#", "~"))


def fingerprint(paths: Iterable[str | Path]) -> tuple[tuple[str, int, int], ...]:
    """What changes when a manifest is added, edited or removed: (file, size, mtime) of each."""
    out = []
    for path in manifest_files(paths):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed between listing and stat: the next poll sees it gone
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


def parse(text: str, source: str, namespace: str = "default") -> LoadResult:
    """Validate every document of one file's text."""
    manifests: list[Manifest] = []
    problems: list[Problem] = []
    index = 0
    try:
        for index, doc in enumerate(yaml.safe_load_all(text), start=1):
            if doc is None:
                continue  # an empty document, e.g. after a trailing `---`
            try:
                obj, found = schema.validate(doc, namespace)
            except RecursionError:
                obj, found = None, [schema.Problem("(document)", TOO_DEEP)]
            if obj is None:
                subject = _subject(doc)
                problems += [Problem(source, index, p.field, p.message, subject) for p in found]
                continue
            meta = obj["metadata"]
            obj.pop("status", None)  # status belongs to the controller, never to a manifest
            manifests.append(Manifest(obj["kind"], meta["namespace"], meta["name"], obj, source, index))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        problems.append(Problem(source, index + 1, "(yaml)", f"{line}{problem}"))
    except RecursionError:  # the YAML parser recurses once per level
        problems.append(Problem(source, index + 1, "(yaml)", TOO_DEEP))
    return LoadResult(tuple(manifests), tuple(problems))


def _subject(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else ""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
    return " ".join(p for p in (kind, f"{ns}/{name}" if ns and name else name) if p)


def load(paths: Sequence[str | Path], namespace: str = "default") -> LoadResult:
    """Load every manifest under `paths`. An object defined twice keeps its first definition."""
    manifests: list[Manifest] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str], Manifest] = {}
    for raw in paths:
        if not Path(raw).exists():
            problems.append(Problem(str(raw), None, "(path)", "no such file or directory"))
    for path in manifest_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(str(path), None, "(file)", f"cannot read: {err}"))
            continue
        result = parse(text, str(path), namespace)
        problems += result.problems
        for manifest in result.manifests:
            first = seen.get((manifest.kind, manifest.key))
            if first is not None:
                problems.append(Problem(manifest.source, manifest.document, "metadata.name",
                                        f"{manifest.kind} {manifest.key} is already defined in {first.where}",
                                        f"{manifest.kind} {manifest.key}"))
                continue
            seen[(manifest.kind, manifest.key)] = manifest
            manifests.append(manifest)
    return LoadResult(tuple(manifests), tuple(problems))
