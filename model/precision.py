"""Whether to compute in bfloat16: only on CPUs with native bfloat16 instructions
(AVX512-BF16 or AMX), where it ran 1.6-1.8x as fast as fp32 here; elsewhere it would be
emulated and slower."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def native_bf16() -> bool:
    """This CPU has bfloat16 instructions."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())  # noqa: SLF001


def mixed_precision(wanted: bool) -> bool:
    """Whether to run under bfloat16 autocast: wanted, and the CPU has native bfloat16."""
    if wanted and not native_bf16():
        logger.warning("this CPU has no native bfloat16 instructions: computing in fp32")
    return wanted and native_bf16()
