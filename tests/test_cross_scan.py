"""Cross-scan / cross-merge (SPEC section 4): scan orders checked against hand-written lists, the merge
as the adjoint of the scan, edge grids, errors, and traced (size-generic) indices."""

import pytest
import torch

from ultra_fer_mamba.ops import cross_merge, cross_scan, scan_orders

# flat position i*W + j visited at each step, written out from SPEC section 4 for each direction k0..k7
EXPECTED = {
    (3, 4): [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # k0 row-major
        [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11],  # k1 column-major
        [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],  # k2 = k0 reversed
        [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0],  # k3 = k1 reversed
        [0, 5, 10, 1, 6, 11, 2, 7, 8, 3, 4, 9],  # k4 wrapped diagonals (i, (i + j) mod W)
        [0, 7, 10, 1, 4, 11, 2, 5, 8, 3, 6, 9],  # k5 wrapped anti-diagonals (i, (j - i) mod W)
        [9, 4, 3, 8, 7, 2, 11, 6, 1, 10, 5, 0],  # k6 = k4 reversed
        [9, 6, 3, 8, 5, 2, 11, 4, 1, 10, 7, 0],  # k7 = k5 reversed
    ],
    (5, 2): [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 2, 4, 6, 8, 1, 3, 5, 7, 9],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        [9, 7, 5, 3, 1, 8, 6, 4, 2, 0],
        [0, 3, 4, 7, 8, 1, 2, 5, 6, 9],  # W = 2: +1 and -1 mod 2 coincide, so k4 == k5
        [0, 3, 4, 7, 8, 1, 2, 5, 6, 9],
        [9, 6, 5, 2, 1, 8, 7, 4, 3, 0],
        [9, 6, 5, 2, 1, 8, 7, 4, 3, 0],
    ],
    (1, 7): [
        [0, 1, 2, 3, 4, 5, 6],
        [0, 1, 2, 3, 4, 5, 6],  # one row: column-major is row-major
        [6, 5, 4, 3, 2, 1, 0],
        [6, 5, 4, 3, 2, 1, 0],
        [0, 1, 2, 3, 4, 5, 6],  # one row: every diagonal is one pixel, visited j = 0..6
        [0, 1, 2, 3, 4, 5, 6],
        [6, 5, 4, 3, 2, 1, 0],
        [6, 5, 4, 3, 2, 1, 0],
    ],
}


@pytest.mark.parametrize("hw", list(EXPECTED))
def test_scan_order_by_hand(hw):
    h, w = hw
    assert scan_orders(h, w, 8).tolist() == EXPECTED[hw]
    assert scan_orders(h, w, 4).tolist() == EXPECTED[hw][:4]
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).repeat(2, 3, 1, 1)  # value = flat position
    xs = cross_scan(x)  # (b, k, c, l)
    assert xs.shape == (2, 8, 3, h * w)
    for k in range(8):
        assert xs[1, k, 2].long().tolist() == EXPECTED[hw][k]


@pytest.mark.parametrize("hw", [(3, 4), (5, 2), (1, 7), (6, 6), (1, 1), (7, 1)])
@pytest.mark.parametrize("directions", [4, 8])
def test_merge_of_scan_is_k_times_x(hw, directions):
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    merged = cross_merge(cross_scan(x, directions), *hw)
    torch.testing.assert_close(merged, directions * x.flatten(2))


@pytest.mark.parametrize("hw", [(3, 4), (5, 2), (1, 7)])
@pytest.mark.parametrize("directions", [4, 8])
def test_merge_is_adjoint_of_scan(hw, directions):
    h, w = hw
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    y = torch.randn(2, directions, 3, h * w, dtype=torch.float64)
    lhs = (cross_scan(x, directions) * y).sum()  # <scan(x), y>
    rhs = (x.flatten(2) * cross_merge(y, h, w)).sum()  # <x, merge(y)>
    torch.testing.assert_close(lhs, rhs)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, directions), (x.requires_grad_(),))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, h, w), (y.requires_grad_(),))


def test_single_pixel():
    x = torch.randn(2, 5, 1, 1)
    xs = cross_scan(x)
    assert xs.shape == (2, 8, 5, 1)
    torch.testing.assert_close(xs, x.flatten(2)[:, None].expand(2, 8, 5, 1))
    torch.testing.assert_close(cross_merge(xs, 1, 1), 8 * x.flatten(2))


@pytest.mark.parametrize("directions", [0, 2, 3, 6, 16])
def test_invalid_directions(directions):
    with pytest.raises(ValueError, match="directions"):
        scan_orders(3, 4, directions)
    with pytest.raises(ValueError, match="directions"):
        cross_scan(torch.randn(1, 2, 3, 4), directions)
    with pytest.raises(ValueError):
        cross_merge(torch.randn(1, directions, 2, 12), 3, 4)


def test_merge_length_mismatch():
    with pytest.raises(ValueError, match="h\\*w"):
        cross_merge(torch.randn(1, 8, 2, 12), 3, 5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_traced_indices_follow_the_input_size():
    """Under torch.jit.trace the orders come from the traced h, w: one trace serves every size."""

    def scan_merge(x):
        return cross_merge(cross_scan(x) * 2, x.shape[2], x.shape[3])

    cross_scan(torch.randn(1, 2, 5, 6))  # a cached eager entry must not be baked into the trace
    traced = torch.jit.trace(scan_merge, torch.randn(1, 2, 5, 6))
    for hw in [(5, 6), (3, 4), (7, 2)]:
        x = torch.randn(2, 2, *hw)
        torch.testing.assert_close(traced(x), scan_merge(x))
        torch.testing.assert_close(torch.jit.trace(cross_scan, x)(x), cross_scan(x))
