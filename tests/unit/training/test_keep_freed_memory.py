"""glibc keeps freed memory for reuse: in a CPU training process only when asked
(``MEDSSL_KEEP_FREED_MEMORY=1``), in ``medssl predict`` unless told not to (``=0``). Run in
child processes: the setting is process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CHILD = ("import logging, sys; logging.basicConfig(level=logging.INFO)\n"
         "from medssl.training.distributed import setup_distributed\n"
         "from medssl import devices\n"
         "setup_distributed('cpu'); print(devices._KEPT)")  # fmt: skip


def _child(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MEDSSL_KEEP_FREED_MEMORY"}
    if value is not None:
        env["MEDSSL_KEEP_FREED_MEMORY"] = value
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_cpu_training_keeps_freed_memory_only_when_asked():
    assert _child(None) == "False"
    assert _child("0") == "False"
    assert _child("1") == "True"


PREDICT_CHILD = "from medssl import devices; devices.keep_freed_memory(default=True); print(devices._KEPT)"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_predict_keeps_freed_memory_unless_told_not_to():
    env = {k: v for k, v in os.environ.items() if k != "MEDSSL_KEEP_FREED_MEMORY"}
    for value, kept in ((None, "True"), ("0", "False"), ("no", "False"), ("1", "True")):
        child_env = env if value is None else {**env, "MEDSSL_KEEP_FREED_MEMORY": value}
        out = subprocess.run([sys.executable, "-c", PREDICT_CHILD], capture_output=True, text=True, env=child_env,
                             check=True)  # fmt: skip
        assert out.stdout.strip() == kept, value
