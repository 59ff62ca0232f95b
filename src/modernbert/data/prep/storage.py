"""Where a conversion writes: a local folder, or an object store through mosaicml-streaming.

A remote root (s3://, gs://, oci://, ...) is written through streaming's uploaders, so every
backend streaming supports works here too. ``file://PATH`` names a local folder that is
nevertheless treated as remote (files staged locally, then copied with streaming's local
uploader): it runs the remote code path on one machine, which is how the tests exercise it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DOWNLOAD_TIMEOUT_S = 600.0


def remote_schemes() -> list[str]:
    """URL schemes streaming can upload to, plus file:// (a local folder used as remote)."""
    from streaming.base.storage.upload import UPLOADERS

    return sorted({key for key in UPLOADERS if key and "/" not in key} | {"file"})


@dataclass(frozen=True)
class OutputRoot:
    """The output of a conversion: `local` (a Path) or `remote` (a URL or file:// path)."""

    url: str
    local: Path | None = None
    remote: str | None = None

    @classmethod
    def parse(cls, url: str | Path) -> OutputRoot:
        text = str(url)
        scheme = urlparse(text).scheme
        if scheme == "file":
            return cls(text, remote=str(Path(text.removeprefix("file://")).absolute()))
        if scheme and len(scheme) > 1:  # "c:" style drive letters are paths
            if scheme not in remote_schemes():
                raise ValueError(
                    f"output {text!r}: unknown scheme {scheme!r}; use a local folder or one of "
                    f"{', '.join(s + '://' for s in remote_schemes())}"
                )
            return cls(text, remote=text.rstrip("/"))
        return cls(text, local=Path(text).expanduser().absolute())

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    def url_of(self, rel: str) -> str:
        """Full path or URL of `rel` (a '/'-separated path below the root)."""
        if self.remote is not None:
            return f"{self.remote}/{rel}"
        assert self.local is not None
        return str(self.local / rel)

    def put(self, local_file: Path, rel: str) -> None:
        """Copy a local file to `rel` below the root (an upload for remote roots)."""
        from streaming.base.storage import CloudUploader

        folder, name = self.url_of(rel).rsplit("/", 1)
        # The uploader wants a folder holding just the file: link it into an empty one.
        staged = Path(tempfile.mkdtemp(prefix=".upload-", dir=local_file.parent))
        try:
            try:
                os.link(local_file, staged / name)
            except OSError:  # no hard links on this file system
                shutil.copyfile(local_file, staged / name)
            uploader = CloudUploader.get((str(staged), folder), keep_local=False, exist_ok=True)
            uploader.upload_file(name)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    def fetch(self, rel: str, local_file: Path) -> bool:
        """Copy `rel` to a local file; False if it does not exist."""
        from streaming.base.storage import CloudDownloader

        try:
            CloudDownloader.direct_download(self.url_of(rel), str(local_file), DOWNLOAD_TIMEOUT_S)
        except FileNotFoundError:
            return False
        return local_file.is_file()

    def read_json(self, rel: str) -> dict[str, Any] | None:
        """A JSON file below the root, or None if it does not exist."""
        if self.local is not None:
            path = self.local / rel
            return json.loads(path.read_text()) if path.is_file() else None
        with tempfile.TemporaryDirectory(prefix="modernbert-fetch-") as tmp:
            local = Path(tmp) / "file.json"
            return json.loads(local.read_text()) if self.fetch(rel, local) else None

    def write_json(self, rel: str, data: dict[str, Any]) -> None:
        """Write a JSON file below the root atomically (local) or as one upload (remote)."""
        text = json.dumps(data, indent=2) + "\n"
        if self.local is not None:
            path = self.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
            return
        with tempfile.TemporaryDirectory(prefix="modernbert-json-") as tmp:
            local = Path(tmp) / Path(rel).name
            local.write_text(text)
            self.put(local, rel)
