"""Switch off Ultralytics' network use for this process (our CLI and tests call it first)."""

from __future__ import annotations

import os


def go_offline() -> None:
    """Set YOLO_OFFLINE (no DNS probe, no events) and YOLO_AUTOINSTALL=false unless the user chose otherwise.

    Must run before ``ultralytics`` is first imported to affect its import-time checks.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
