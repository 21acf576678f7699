"""Whether to compute in bfloat16: only where the CPU's AMX tiles run it, where training
ran 1.3x and encoding 1.6-1.8x as fast as fp32 here. Elsewhere it is slower than fp32:
with AVX512-BF16 alone a 512→2048 layer took 1.4x as long, and emulation longer still.

Some virtual machines advertise AMX but fault on its first instruction (an illegal
instruction kills the process), so a small bfloat16 product is first run in a child
process; bfloat16 is used only if that child survives."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys

import torch

logger = logging.getLogger(__name__)

PROBE = ("import torch; torch.nn.functional.linear(torch.ones(64, 64, dtype=torch.bfloat16), "
         "torch.ones(64, 64, dtype=torch.bfloat16))")
PROBE_TIMEOUT_SECONDS = 120


@functools.cache
def native_bf16() -> bool:
    """This CPU advertises AMX and a bfloat16 product on it runs (checked once per process)."""
    if not torch.cpu._is_amx_tile_supported():  # noqa: SLF001
        return False
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True,
                               timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return False
    if probe.returncode != 0:
        logger.warning("this CPU advertises AMX but a bfloat16 product failed on it (exit %d): "
                       "computing in fp32", probe.returncode)
    return probe.returncode == 0


def mixed_precision(wanted: bool) -> bool:
    """Whether to run under bfloat16 autocast: wanted, and the CPU runs it natively."""
    if wanted and not native_bf16():
        logger.warning("this CPU has no usable native bfloat16 instructions: computing in fp32")
    return wanted and native_bf16()
