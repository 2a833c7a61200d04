"""MkDocs hook: links from the docs to repository files outside docs/ stay plain relative links.

A page in docs/ links to `../benchmarks/results/runtime.md` or `../ARCHITECTURE.md` as a reader on
the repository sees them. MkDocs only knows files inside docs_dir, so such a link would be "not
found" (a warning, and `mkdocs build --strict` fails). This hook adds every repository file the
docs link to (and what those files link to, recursively) to the site under its repository path,
and rewrites the links to it. A link to a file that does not exist is left alone, so MkDocs still
reports it and a strict build fails: a broken link fails CI either way.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)

_added: dict[str, str] = {}  # repository path of a file outside docs/ -> its src_uri in the site


def _outside_code(markdown: str) -> list[tuple[int, int]]:
    """The markdown's stretches outside fenced code blocks, as (start, end) offsets."""
    spans, start, inside = [], 0, False
    for fence in FENCE.finditer(markdown):
        if not inside:
            spans.append((start, fence.start()))
        else:
            start = fence.end()
        inside = not inside
    if not inside:
        spans.append((start, len(markdown)))
    return spans


def _links(markdown: str) -> Iterator[re.Match[str]]:
    for start, end in _outside_code(markdown):
        yield from LINK.finditer(markdown, start, end)


def _repo_target(page_repo_path: str, url: str) -> str | None:
    """The repository path a relative link points to, or None for URLs, anchors and absolute paths."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", url) or url.startswith(("#", "/")):
        return None
    path = url.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    docs_prefix = docs.relative_to(root).as_posix() + "/"
    _added.clear()
    queue = [docs_prefix + f.src_uri for f in files.documentation_pages()]
    seen = set(queue)
    while queue:
        repo_path = queue.pop()
        text = (root / repo_path).read_text(encoding="utf-8")
        for match in _links(text):
            target = _repo_target(repo_path, match.group(2))
            if target is None or target.startswith("../") or target.startswith(docs_prefix):
                continue
            if target in seen or not (root / target).is_file():
                continue  # a missing file: MkDocs reports the link (strict fails)
            seen.add(target)
            site_file = File(target, str(root), config["site_dir"], config["use_directory_urls"])
            files.append(site_file)
            _added[target] = site_file.src_uri
            if target.endswith(".md"):
                queue.append(target)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    docs_prefix = docs.relative_to(root).as_posix() + "/"
    src_uri = page.file.src_uri
    page_repo_path = src_uri if src_uri in _added.values() else docs_prefix + src_uri

    def rewrite(match: re.Match[str]) -> str:
        url = match.group(2)
        target = _repo_target(page_repo_path, url)
        if target is None or target not in _added:
            return match.group(0)
        anchor = url[len(url.split("#", 1)[0]) :]
        relative = posixpath.relpath(_added[target], posixpath.dirname(src_uri) or ".")
        return match.group(1) + relative + anchor + match.group(3)

    pieces, last = [], 0
    for match in _links(markdown):
        pieces.append(markdown[last : match.start()])
        pieces.append(rewrite(match))
        last = match.end()
    pieces.append(markdown[last:])
    return "".join(pieces)
