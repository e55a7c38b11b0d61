"""The report folder and its ``state.json``: what a comparison has done so far, so a re-run resumes it.

``state.json`` holds the settings (:func:`ultra_fer_mamba.compare.args.settings_of`) and, per entry (model), its spec,
its cost (size and latency, measured once) and per seed whether training finished and the measured row. It is
rewritten atomically after every step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ultra_fer_mamba.io import to_json


def same_settings(a: dict, b: dict) -> bool:
    """Whether two settings dicts are equal once both went through JSON (tuples and lists alike, NaN as null)."""
    return json.dumps(to_json(a), sort_keys=True) == json.dumps(to_json(b), sort_keys=True)


def load_state(report_dir: str | Path) -> dict | None:
    """Read ``state.json`` of a report folder, None if absent or unreadable."""
    try:
        return json.loads((Path(report_dir) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def save_state(report_dir: str | Path, state: dict) -> None:
    """Write ``state.json`` atomically (a crash mid-write never leaves half a file)."""
    tmp = Path(report_dir) / "state.json.tmp"
    tmp.write_text(json.dumps(to_json(state), indent=2))
    os.replace(tmp, Path(report_dir) / "state.json")


def find_report_dir(project: str | None, name: str | None, settings: dict) -> Path:
    """The report folder: an existing one with the same settings (resume), else a new one, Ultralytics-incremented.

    Args:
        project (str | None): Parent folder (default ``runs/fer``).
        name (str | None): Folder name (default ``compare``).
        settings (dict): Settings that must match for a folder to be resumed.

    Returns:
        (Path): The folder, created.
    """
    from ultralytics.utils import LOGGER
    from ultralytics.utils.files import increment_path

    base = Path(project or "runs/fer") / (name or "compare")
    candidate, n = base, 1
    while candidate.exists():
        state = load_state(candidate)
        if state and same_settings(state.get("settings", {}), settings):
            LOGGER.info(f"compare: resuming in {candidate}")
            return candidate
        n += 1
        candidate = Path(f"{base}-{n}")
    report_dir = increment_path(base, mkdir=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    if report_dir != base:
        LOGGER.info(f"compare: {base} holds other settings, starting {report_dir}")
    return report_dir
