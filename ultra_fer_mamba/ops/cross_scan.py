"""Omnidirectional cross-scan and cross-merge (SPEC section 4).

A feature map (b, c, h, w) becomes k sequences of length l = h*w, one per scan direction, and back.
Directions, for an h x w grid with position (i, j) = row i, column j:
    k0 row-major, k1 column-major, k2/k3 their reverses,
    k4 wrapped diagonals  (for j in 0..w-1, for i in 0..h-1: (i, (i + j) mod w)),
    k5 wrapped anti-diagonals (for j in 0..w-1, for i in 0..h-1: (i, (j - i) mod w)),
    k6/k7 their reverses.
directions=4 is VMamba's SS2D (k0..k3). Each direction is a permutation of the l flat positions, kept as
an index tensor built once per (h, w, directions, device) and reused.

Shape letters: b batch, k directions, c channels, h, w grid, l = h*w.
"""

from __future__ import annotations

import torch

from .backend import exporting

DIRECTIONS = (4, 8)
_INDEX_CACHE: dict = {}


def scan_orders(h: int, w: int, directions: int = 8) -> torch.Tensor:
    """Flat position (i*w + j) visited at each step of each direction, (k, l) int64 on the CPU.

    Examples:
        >>> scan_orders(2, 2, 4)[1].tolist()  # column-major
        [0, 2, 1, 3]
    """
    if directions not in DIRECTIONS:
        raise ValueError(f"directions={directions} is not supported; use one of {DIRECTIONS}")
    if not torch.jit.is_tracing() and (h < 1 or w < 1):  # traced sizes are tensors: no Python test
        raise ValueError(f"cross_scan needs a non-empty grid, got h={h}, w={w}")
    grid = torch.arange(h * w).view(h, w)
    row = grid.flatten()  # k0
    col = grid.t().flatten()  # k1
    orders = [row, col, row.flip(0), col.flip(0)]
    if directions == 8:
        i = torch.arange(h).view(1, h)  # inner loop over rows
        j = torch.arange(w).view(w, 1)  # outer loop over diagonals
        diag = (i * w + (i + j) % w).flatten()  # k4
        anti = (i * w + (j - i) % w).flatten()  # k5
        orders += [diag, anti, diag.flip(0), anti.flip(0)]
    return torch.stack(orders)


def scan_indices(h: int, w: int, directions: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached (order, inverse) index tensors, each (k, l), on device: scan_orders and its inverse permutation.

    While tracing or exporting, h and w are traced sizes: the indices are rebuilt from them with torch
    ops (never cached, never a constant), so an exported graph works at any h, w.
    """
    if exporting():
        order = scan_orders(h, w, directions).to(device)
        arange = torch.arange(order.shape[1], device=device).expand_as(order)
        return order, torch.zeros_like(order).scatter(1, order, arange)  # inverse permutation
    key = (h, w, directions, str(device))
    if key not in _INDEX_CACHE:
        with torch.inference_mode(False):  # a cached inference tensor could not be used under autograd later
            order = scan_orders(h, w, directions)
            inverse = order.argsort(dim=1)  # position of each flat index in each sequence
            _INDEX_CACHE[key] = (order.to(device), inverse.to(device))
    return _INDEX_CACHE[key]


def cross_scan(x: torch.Tensor, directions: int = 8) -> torch.Tensor:
    """Unfold a feature map into one sequence per direction.

    Args:
        x (torch.Tensor): Feature map (b, c, h, w).
        directions (int): 8 (omnidirectional, OSSM) or 4 (VMamba SS2D).

    Returns:
        (torch.Tensor): Sequences (b, k, c, l), l = h*w.

    Examples:
        >>> cross_scan(torch.randn(2, 3, 4, 5)).shape
        torch.Size([2, 8, 3, 20])
    """
    b, c, h, w = x.shape
    order, _ = scan_indices(h, w, directions, x.device)
    k, l = order.shape
    xs = x.reshape(b, c, l).index_select(2, order.flatten())  # (b, c, k*l)
    return xs.view(b, c, k, l).transpose(1, 2)  # (b, k, c, l)


def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Undo each direction's permutation and sum the directions (the adjoint of cross_scan).

    Args:
        y (torch.Tensor): Sequences (b, k, c, l), k = 4 or 8, l = h*w.
        h (int): Grid height.
        w (int): Grid width.

    Returns:
        (torch.Tensor): Merged sequence (b, c, l) in row-major order.

    Examples:
        >>> x = torch.randn(1, 2, 3, 4)
        >>> torch.allclose(cross_merge(cross_scan(x), 3, 4), 8 * x.flatten(2))
        True
    """
    b, k, c, l = y.shape
    if l != h * w:
        raise ValueError(f"cross_merge: sequence length {l} != h*w = {h}*{w}")
    _, inverse = scan_indices(h, w, k, y.device)
    index = inverse.view(1, k, 1, l).expand(b, k, c, l)
    return y.gather(3, index).sum(1)  # sequence kk read back in row-major order, summed over k; (b, c, l)


def lowrank_delta(dts: torch.Tensor, dt_weight: torch.Tensor) -> torch.Tensor:
    """Step sizes of every direction from Mamba's low-rank dt_proj: (k, b, l, e) = dts (b, l, k, r) @ dt_weight
    (k, e, r) per direction, by one batched matmul.

    Examples:
        >>> lowrank_delta(torch.randn(2, 12, 8, 3), torch.randn(8, 6, 3)).shape
        torch.Size([8, 2, 12, 6])
    """
    b, l, k, r = dts.shape
    return torch.bmm(dts.reshape(b * l, k, r).transpose(0, 1), dt_weight.transpose(1, 2)).view(k, b, l, -1)


def check_fused_shapes(name: str, u, delta, A, B, C, h: int, w: int, dt_weight=None) -> None:
    """Raise ValueError naming ``name`` unless the fused op's inputs fit (see cross_selective_scan for the shapes)."""
    b, l, e = u.shape
    k, n = A.shape[0], A.shape[2]
    want = (b, l, k, dt_weight.shape[2]) if dt_weight is not None else (k, b, l, e)
    if (l != h * w or tuple(delta.shape) != want or tuple(B.shape) != (b, l, k, n) or B.shape != C.shape
            or (dt_weight is not None and tuple(dt_weight.shape[:2]) != (k, e))):
        raise ValueError(f"{name}: shapes u {tuple(u.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, "
                         f"B {tuple(B.shape)}, C {tuple(C.shape)}, dt_weight "
                         f"{None if dt_weight is None else tuple(dt_weight.shape)} do not fit h={h}, w={w}")
