"""The nn.Modules alone: shapes, residuals, options and their errors (SPEC sections 2-3)."""

import pytest
import torch

from ultra_fer_mamba.nn import ABMLP, OSSM, FERYOLOVSS1, FERYOLOVSS2


def test_abmlp_smallest_width_and_gating():
    m = ABMLP(4, r=16)  # c/r = 0 -> the bottleneck keeps one unit
    assert [l.out_features for l in m.mlp if isinstance(l, torch.nn.Linear)] == [1, 1, 4]
    assert all(l.bias is None for l in m.mlp if isinstance(l, torch.nn.Linear))
    x = torch.randn(3, 4, 5, 6)
    y = m(x)
    w = y / x  # per-channel sigmoid weights, constant over space
    assert y.shape == x.shape
    assert torch.allclose(w, w[:, :, :1, :1].expand_as(w), atol=1e-5)
    assert ((w > 0) & (w < 1)).all()


@pytest.mark.parametrize("hw", [(1, 1), (3, 7), (8, 8)])
@pytest.mark.parametrize("directions", [4, 8])
def test_ossm_shape_and_parameters(hw, directions):
    m = OSSM(16, directions=directions)
    x = torch.randn(2, 16, *hw)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert m.A_logs.shape == (directions * 32, 16) and m.Ds.shape == (directions * 32,)
    assert m.x_proj_weight.shape == (directions, 1 + 32, 32)  # dt_rank = ceil(16/16) = 1
    assert torch.allclose(m.A_logs[5], torch.log(torch.arange(1, 17.0)))  # A = -(1..N)
    assert torch.all(m.Ds == 1)
    dt = torch.nn.functional.softplus(m.dt_projs_bias)  # initial dt in [1e-3, 1e-1]
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6


def test_ossm_residual_is_identity_when_output_is_zero():
    m = OSSM(8)
    torch.nn.init.zeros_(m.out_proj.weight)
    x = torch.randn(1, 8, 4, 5)
    assert torch.equal(m(x), x)


def test_ossm_bad_directions():
    with pytest.raises(ValueError, match="directions=5"):
        OSSM(8, directions=5)


@pytest.mark.parametrize("kwargs, message", [
    ({"d_conv": 4}, r"d_conv=4 is not supported; use an odd int \(1, 3, 5, ...\)"),
    ({"d_conv": 0}, "d_conv=0"),
    ({"d_conv": 3.0}, "d_conv=3.0"),
    ({"dt_rank": 0}, r"dt_rank=0 is not supported; use an int >= 1 or 'auto'"),
    ({"dt_rank": 2.5}, "dt_rank=2.5"),
    ({"dt_rank": "full"}, "dt_rank='full'"),
])
def test_ossm_bad_d_conv_and_dt_rank_name_the_allowed_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OSSM(8, **kwargs)


@pytest.mark.parametrize("d_conv, dt_rank", [(1, 1), (5, 3), (3, "auto")])
def test_ossm_good_d_conv_and_dt_rank(d_conv, dt_rank):
    m = OSSM(8, d_conv=d_conv, dt_rank=dt_rank)
    assert m.conv2d.kernel_size == (d_conv, d_conv) and m.r == (1 if dt_rank == "auto" else dt_rank)
    assert m(torch.randn(1, 8, 3, 5)).shape == (1, 8, 3, 5)


def _zero_proj(m):
    torch.nn.init.zeros_(m.proj.weight)
    torch.nn.init.zeros_(m.proj.bias)
    return m


def test_vss1_changes_channels_without_shortcut():
    m = _zero_proj(FERYOLOVSS1(32, 24, n=2))
    assert len(m.oss) == 2
    x = torch.randn(2, 32, 6, 5)
    y = m(x)
    assert y.shape == (2, 24, 6, 5)
    assert torch.count_nonzero(y) == 0  # no outer residual: zero projection gives zero output


def test_vss2_adds_its_input():
    m = _zero_proj(FERYOLOVSS2(32, 32))
    x = torch.randn(2, 32, 6, 5)
    assert torch.equal(m(x), x)
    m = FERYOLOVSS2(32, 32)
    assert not torch.allclose(m(x), x)


def test_vss2_rejects_channel_change():
    with pytest.raises(ValueError, match="c1=32 != c2=64"):
        FERYOLOVSS2(32, 64)


def test_vss_branch_switches():
    x = torch.randn(1, 32, 4, 4)
    for kw, frm_type, oss_type in (({"frm": False}, torch.nn.Identity, torch.nn.Sequential),
                                   ({"oss": False}, torch.nn.Sequential, torch.nn.Identity)):
        m = FERYOLOVSS1(32, 16, **kw)
        assert isinstance(m.frm, frm_type) and isinstance(m.oss, oss_type)
        assert m(x).shape == (1, 16, 4, 4)
    assert all(o.k == 4 for o in FERYOLOVSS1(32, 16, directions=4).oss)


def test_vss_backward_reaches_every_parameter():
    m = FERYOLOVSS2(16, 16)
    m(torch.randn(2, 16, 5, 3)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_ossm_trains_after_inference_mode():
    """Index tensors cached under torch.inference_mode must still serve autograd later (compare does this)."""
    m = OSSM(8)
    x = torch.randn(1, 8, 3, 11)
    with torch.inference_mode():
        m(x)
    m(x).sum().backward()
    assert m.A_logs.grad is not None
