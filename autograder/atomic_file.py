"""Files written whole or not at all: what every command writes that a reader or a rerun trusts.

A temporary file beside the target, then one rename: a run killed at any moment leaves the old
file or the new one, never half of one (result.json, autograded notebooks, feedback pages, the
CSV, the data manifest, the build's references and solutions). Temporaries a killed run left
behind are removed by the next write of the same file. Imports nothing of the package: the
build, grading and data staging all use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(target: Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to `target` through `.<name>.<pid>.tmp` and os.replace."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a run that was killed
        stale.unlink(missing_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    os.replace(temporary, target)
    return target
