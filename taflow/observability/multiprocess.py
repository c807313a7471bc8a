"""Where the API's processes keep their metrics when there are several (prometheus_client's
multiprocess mode): the directory PROMETHEUS_MULTIPROC_DIR names. Imports nothing of
prometheus_client, which reads the variable once, when it is first imported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR names an empty directory for the processes started inside the block.

    The directory the environment already names, if any (made if missing; the `*.db` files of an
    earlier run removed, since counters must start from zero; the directory itself kept), else a
    temporary one of ours, removed afterwards. A process killed with SIGKILL leaves its temporary
    directory behind: whoever kills it that way names one (the drill stack: in its own directory).
    """
    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="taflow-api-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
