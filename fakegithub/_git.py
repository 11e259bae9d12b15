"""A tiny content-addressed store: real git blob and tree SHAs for an in-memory file set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def blob_sha(data: bytes) -> str:
    """The SHA git gives a file with this content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Entry:
    name: str
    type: str  # "blob" or "tree"
    sha: str
    size: int | None = None

    @property
    def mode(self) -> str:
        return "100644" if self.type == "blob" else "040000"


@dataclass
class Snapshot:
    """The state of the repository at one commit."""

    files: dict[str, bytes]
    root: str  # root tree sha
    dirs: dict[str, str] = field(default_factory=dict)  # "" / "pods" / "pods/acme" -> tree sha


class Store:
    """Every blob and tree ever built (so old SHAs stay readable, as on GitHub)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, list[Entry]] = {}

    def snapshot(self, files: dict[str, bytes]) -> Snapshot:
        files = dict(files)
        nested: dict = {}
        for path, data in files.items():
            parts = path.split("/")
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = data
        dirs: dict[str, str] = {}
        root = self._tree(nested, "", dirs)
        return Snapshot(files=files, root=root, dirs=dirs)

    def _tree(self, node: dict, prefix: str, dirs: dict[str, str]) -> str:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                sha = self._tree(value, f"{prefix}{name}/", dirs)
                entries.append(Entry(name, "tree", sha))
            else:
                sha = blob_sha(value)
                self.blobs[sha] = value
                entries.append(Entry(name, "blob", sha, len(value)))
        # git orders entries by name, comparing a tree's name as if it ended with "/".
        entries.sort(key=lambda e: e.name.encode() + (b"/" if e.type == "tree" else b""))
        body = b"".join(
            (b"100644 " if e.type == "blob" else b"40000 ") + e.name.encode() + b"\0" + bytes.fromhex(e.sha)
            for e in entries
        )
        sha = hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()
        self.trees[sha] = entries
        dirs[prefix.rstrip("/")] = sha
        return sha

    def walk(self, tree_sha: str, prefix: str = ""):
        """Yield (path, Entry) for every entry below a tree, depth first, as ``recursive=1`` lists."""
        for entry in self.trees.get(tree_sha, []):
            path = f"{prefix}{entry.name}"
            yield path, entry
            if entry.type == "tree":
                yield from self.walk(entry.sha, path + "/")


def commit_sha(tree: str, parent: str | None, message: str, timestamp: int) -> str:
    lines = [f"tree {tree}"]
    if parent:
        lines.append(f"parent {parent}")
    who = f"fakegithub <fakegithub@example.invalid> {timestamp} +0000"
    lines += [f"author {who}", f"committer {who}", "", message]
    body = ("\n".join(lines) + "\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body, usedforsecurity=False).hexdigest()
