"""RRDBNet (the Real-ESRGAN x4plus generator, for the speed benchmark): size, shapes, residuals."""

from __future__ import annotations

import pytest
import torch

from linearsr_cli.errors import ConfigError
from linearsr_cli.evaluate.rrdbnet import RRDB, ResidualDenseBlock, RRDBConfig, RRDBNet


def test_default_config_has_the_x4plus_parameter_count() -> None:
    # Real-ESRGAN x4plus (RealESRGAN_x4plus.pth) holds 16,697,987 parameters.
    model = RRDBNet(RRDBConfig())
    assert sum(p.numel() for p in model.parameters()) == 16_697_987
    assert len(model.body) == 23


@pytest.mark.parametrize("scale", [2, 4])
def test_output_shape_is_scaled_input(scale: int) -> None:
    model = RRDBNet(RRDBConfig(num_feat=8, num_block=2, num_grow=4, scale=scale)).eval()
    x = torch.rand(2, 3, 5, 7)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 3, 5 * scale, 7 * scale)
    assert torch.isfinite(y).all()


def test_dense_block_is_identity_when_its_last_conv_is_zero() -> None:
    block = ResidualDenseBlock(6, 3)
    assert [c.in_channels for c in block.convs] == [6, 9, 12, 15, 18]
    assert [c.out_channels for c in block.convs] == [3, 3, 3, 3, 6]
    with torch.no_grad():
        block.convs[4].weight.zero_()
        block.convs[4].bias.zero_()
    x = torch.randn(1, 6, 4, 4)
    torch.testing.assert_close(block(x), x)


def test_rrdb_residual_is_scaled_by_0_2() -> None:
    rrdb = RRDB(4, 2)
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad():
        inner = rrdb.rdbs(x)
    torch.testing.assert_close(rrdb(x), inner * 0.2 + x)


def test_upsampling_is_nearest_then_conv() -> None:
    # With the body's contribution removed, a constant image stays spatially constant.
    model = RRDBNet(RRDBConfig(num_feat=4, num_block=1, num_grow=2)).eval()
    with torch.no_grad():
        model.conv_body.weight.zero_()
        model.conv_body.bias.zero_()
        y = model(torch.full((1, 3, 10, 10), 0.5))
    centre = y[..., 12:28, 12:28]  # away from the zero-padded border's reach
    torch.testing.assert_close(centre, centre[..., :1, :1].expand_as(centre))


def test_bf16_autocast_stays_close_to_fp32() -> None:
    model = RRDBNet(RRDBConfig(num_feat=8, num_block=1, num_grow=4)).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


@pytest.mark.parametrize("kwargs", [{"scale": 3}, {"num_block": 0}, {"num_feat": 0}])
def test_bad_config_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RRDBConfig(**kwargs)
