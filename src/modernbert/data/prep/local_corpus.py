"""A real text + code corpus from this machine, with no network: the demo's pretraining data.

Code is the Python source of the standard library and of a fixed list of installed packages;
prose is their docs (markdown/rst/txt files, the long description in their metadata) and
their docstrings, gathered per module with `ast`. Packages are visited round-robin, one file
at a time, so a size cap still yields a mix of every package; duplicates (licenses, vendored
copies) are dropped by content hash.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import sysconfig
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modernbert.data.prep.documents import TEXT, Document, Item, Skipped
from modernbert.data.prep.inputs import IGNORED_DIRS, capped_documents
from modernbert.data.prep.readers import PROSE_EXTENSIONS, decode_text, read_file_document

STDLIB = "stdlib"
# A fixed choice, in visiting order; packages that are not installed are skipped (counted).
DEFAULT_PACKAGES = (
    STDLIB,
    "numpy",
    "torch",
    "transformers",
    "composer",
    "streaming",
    "tokenizers",
    "datasets",
    "omegaconf",
    "pyarrow",
    "sympy",
    "networkx",
    "jinja2",
    "click",
    "requests",
    "urllib3",
    "yaml",
    "tqdm",
)
DEFAULT_MAX_BYTES = 16 * 2**20  # ~4M tokens: enough for the CPU demo, built in seconds
DEFAULT_MAX_FILE_BYTES = 256 * 2**10  # larger .py files are mostly generated tables
MIN_DOCSTRING_CHARS = 20

CODE_SOURCE, DOCSTRING_SOURCE, DOCS_SOURCE = "local-python", "local-docstrings", "local-docs"


@dataclass
class LocalCorpus:
    """Source of the built-in corpus; lazy, so caps stop the walk early."""

    packages: Sequence[str] = DEFAULT_PACKAGES
    max_docs: int | None = None
    max_bytes: int | None = DEFAULT_MAX_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    docstrings: bool = True
    name: str = "local"

    def __iter__(self) -> Iterator[Item]:
        seen: set[bytes] = set()
        for item in capped_documents(self._round_robin(), self.max_docs, self.max_bytes):
            if isinstance(item, Document):
                digest = hashlib.blake2b(item.text.encode("utf-8"), digest_size=16).digest()
                if digest in seen:
                    yield Skipped(item.source, "duplicate", item.key)
                    continue
                seen.add(digest)
            yield item

    def _round_robin(self) -> Iterator[Item]:
        streams = [self._package_items(p) for p in dict.fromkeys(self.packages)]
        while streams:
            for stream in list(streams):
                item = next(stream, None)
                if item is None:
                    streams.remove(stream)
                else:
                    yield item

    def _package_items(self, package: str) -> Iterator[Item]:
        roots = package_roots(package)
        if not roots:
            yield Skipped(self.name, "not_installed", package)
            return
        meta = metadata_description(package)
        if meta:
            yield Document(meta, DOCS_SOURCE, TEXT, f"local/{package}/METADATA")
        for root in roots:
            for path in _walk(root, skip_site_packages=package == STDLIB):
                rel = path.relative_to(root.parent).as_posix()
                yield from self._file_items(path, rel, package)

    def _file_items(self, path: Path, rel: str, package: str) -> Iterator[Item]:
        suffix = path.suffix.lower()
        is_code = suffix == ".py"
        if not is_code and suffix not in PROSE_EXTENSIONS:
            return
        source = CODE_SOURCE if is_code else DOCS_SOURCE
        key = f"local/{package}/{rel}"
        try:
            size = path.stat().st_size
        except OSError as err:
            yield Skipped(source, "unreadable", f"{path}: {err.strerror}")
            return
        if size > self.max_file_bytes:
            yield Skipped(source, "too_large", str(path))
            return
        item = read_file_document(path, source, key, "python" if is_code else TEXT)
        yield item
        if is_code and self.docstrings and isinstance(item, Document):
            module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            prose = docstrings_document(item.text, module)
            if prose is None:
                yield Skipped(DOCSTRING_SOURCE, "syntax_error", str(path))
            elif prose:
                yield Document(prose, DOCSTRING_SOURCE, TEXT, f"{key}#docstrings")


def build_local_corpus(
    packages: Sequence[str] = DEFAULT_PACKAGES,
    max_docs: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> list[Document]:
    """The local corpus as a list of documents (skip notes dropped), e.g. for benchmarks."""
    corpus = LocalCorpus(packages=packages, max_docs=max_docs, max_bytes=max_bytes)
    return [item for item in corpus if isinstance(item, Document)]


def package_roots(package: str) -> list[Path]:
    """Folders (or the single file) of an importable package, found without importing it."""
    if package == STDLIB:
        return [Path(sysconfig.get_paths()["stdlib"])]
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return sorted(Path(p) for p in spec.submodule_search_locations)
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _walk(root: Path, skip_site_packages: bool) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in IGNORED_DIRS
            and not d.startswith(".")
            and not (skip_site_packages and d in ("site-packages", "dist-packages"))
        )
        for name in sorted(files):
            yield Path(dirpath) / name


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def metadata_description(package: str) -> str:
    """The long description (usually the README) from the package's installed metadata."""
    dists = _distributions().get(package, [])
    for dist_name in sorted(dists):
        try:
            raw = importlib.metadata.distribution(dist_name).read_text("METADATA") or ""
        except importlib.metadata.PackageNotFoundError:
            continue
        # METADATA is an RFC 822 header block, a blank line, then the description.
        _, _, body = raw.partition("\n\n")
        text, reason = decode_text(body.encode("utf-8"))
        if reason is None:
            return text
    return ""


def docstrings_document(source: str, module: str) -> str | None:
    """Module/class/function docstrings of one file as prose; None if it does not parse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences etc. in old code
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
    blocks = []
    for qualname, node in _documented(tree, module):
        doc = ast.get_docstring(node, clean=True)
        if doc and len(doc) >= MIN_DOCSTRING_CHARS:
            blocks.append(f"{qualname}\n\n{doc}")
    return "\n\n\n".join(blocks)


def _documented(node: ast.AST, qualname: str) -> Iterator[tuple[str, ast.AST]]:
    yield qualname, node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _documented(child, f"{qualname}.{child.name}")
