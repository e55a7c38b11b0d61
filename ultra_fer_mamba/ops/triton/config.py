"""Tunables of the Triton scan kernels, in one place, and the launch shapes derived from them.

Shape letters: b batch, k directions (groups for the plain scan), e channels per direction, n state size.
"""

from __future__ import annotations

import torch

CHUNK = 32  # steps between saved states; the backward recomputes blocks this long (numba's fused CHUNK)
BLOCK_D = 32  # channels per program (the tile is BLOCK_D x n, float32, in registers)
NUM_WARPS = 2  # warps per program: a 32 x 16 tile is 8 values a thread
NUM_STAGES = 3  # software-pipelining depth of the step loops (1: none); loads run up to 2 steps ahead
PROGRAMS_PER_SM = 4  # the forward runs several directions per program only while this many programs remain
DIRECTIONS_PER_PROGRAM: int | None = None  # force the forward's directions per program (None: the heuristic)


def block_d(e: int) -> int:
    """Channels per program for e channels: BLOCK_D, or the power of two at or above e when that is smaller."""
    return min(BLOCK_D, 1 << max(e - 1, 0).bit_length())


def directions_per_program(k: int, programs: int, device: torch.device) -> int:
    """How many of the k directions one forward program runs (summing them in its own output slice).

    More directions a program means fewer partial outputs to write and sum; fewer means more programs. Halved
    from k while the grid, programs * k / kp, would leave fewer than PROGRAMS_PER_SM programs per
    multiprocessor. On the CPU (interpreter) one program runs all k."""
    if DIRECTIONS_PER_PROGRAM is not None:
        if k % DIRECTIONS_PER_PROGRAM:
            raise ValueError(f"DIRECTIONS_PER_PROGRAM={DIRECTIONS_PER_PROGRAM} does not divide k={k}")
        return DIRECTIONS_PER_PROGRAM
    if device.type != "cuda":
        return k
    target = PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    kp = k
    while kp > 1 and kp % 2 == 0 and programs * (k // kp) < target:
        kp //= 2
    return kp
