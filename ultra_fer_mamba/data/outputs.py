"""The files a command writes into a folder the user names, and only those: a manifest of what it wrote.

``convert`` and ``synth`` write into ``out=``, which may already hold the user's own files. Each run records
what it wrote in ``out/<command>_manifest.json``; a re-run removes its own stale files (listed there, not written
again) and never deletes or changes anything else. A run that would overwrite a file it did not write refuses
before touching anything. The manifest is written before the first output (listing every file the run may
write), so a run killed half-way leaves nothing a re-run would take for the user's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


class Outputs:
    """What one command owns under a folder, as relative POSIX paths.

    Args:
        root (Path): The output folder.
        command (str): The command writing it (names the manifest, ``<command>_manifest.json``).

    Raises:
        SystemExit: If the manifest file exists but was not written by ``command``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "notes.txt").write_text("mine")
        4
        >>> outputs = Outputs(root, "demo")
        >>> outputs.claim({"a.txt"})
        >>> (root / "a.txt").write_text("ours")
        4
        >>> outputs.finish({"a.txt"}, scope=("",))
        0
        >>> sorted(p.name for p in root.iterdir())
        ['a.txt', 'demo_manifest.json', 'notes.txt']
        >>> Outputs(root, "demo").claim({"notes.txt"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: demo: out=... already holds 1 file demo did not write and would overwrite: notes.txt. ...
    """

    def __init__(self, root: Path, command: str):
        self.root, self.command = Path(root), command
        self.manifest = self.root / f"{command}_manifest.json"
        self.writer = f"fer-yolo-mamba {command}"
        self.before = self._read()

    def _read(self) -> set[str]:
        if not self.manifest.exists():
            return set()
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
            assert data["written_by"] == self.writer
            return set(data["files"])
        except Exception:  # not ours, or damaged: never guess which files are ours
            raise SystemExit(f"{self.command}: {self.manifest} was not written by {self.writer}; move it, or choose "
                             f"another out= than {self.root}") from None

    def _write(self, files: Iterable[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest.with_name(self.manifest.name + ".tmp")
        data = {"written_by": self.writer, "files": sorted(files)}
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest)

    def claim(self, planned: Iterable[str]) -> None:
        """Refuse (SystemExit naming the folder and files) if a planned file exists and is not ours; else record them.

        Call before writing anything: on refusal nothing under the folder has changed.
        """
        planned = set(planned)
        foreign = sorted(f for f in planned - self.before if (self.root / f).exists() or (self.root / f).is_symlink())
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise SystemExit(
                f"{self.command}: out={self.root} already holds {len(foreign)} file{'s' * (len(foreign) > 1)} "
                f"{self.command} did not write and would overwrite: {shown}. Nothing was changed; move "
                f"{'them' if len(foreign) > 1 else 'it'} or choose another out=.")
        self.planned = planned
        self._write(self.before | planned)

    def finish(self, written: Iterable[str], scope: tuple[str, ...]) -> int:
        """Remove our files under ``scope`` (path prefixes) not written this run; record what we own; return how many.

        Files of ours outside ``scope`` (e.g. another split) are kept and stay listed.
        """
        written = set(written)
        ours = self.before | self.planned
        stale = {f for f in ours - written if f.startswith(scope)}
        removed = [self.root / f for f in sorted(stale) if (self.root / f).is_file()]
        for path in removed:
            path.unlink()
        self._write((self.before - stale) | written)
        return len(removed)

    def foreign(self, folder: str) -> list[str]:
        """Files in ``root/folder`` that this command did not write (e.g. the user's own), as relative paths."""
        path = self.root / folder
        ours = self.before | getattr(self, "planned", set())
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else []
        return [f"{folder}/{p.name}" for p in files if f"{folder}/{p.name}" not in ours]
