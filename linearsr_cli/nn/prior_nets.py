"""The prior networks a LinearSR weights file can hold, by architecture (config.PRIOR_ARCHS):
"span" (nn/span.py) and "srvgg" (nn/srvgg.py). One place maps a ModelConfig's prior fields to
a network config and back, so the model, the converters and `train revise` agree on it."""

from __future__ import annotations

import dataclasses

from linearsr_cli.config import PRIOR_INPUTS, ModelConfig
from linearsr_cli.errors import ConfigError
from linearsr_cli.nn.span import Span, SpanConfig
from linearsr_cli.nn.srvgg import Srvgg, SrvggConfig

PriorNet = Span | Srvgg
PriorNetConfig = SpanConfig | SrvggConfig


def arch_of(net_cfg: PriorNetConfig) -> str:
    """The PRIOR_ARCHS name of a network config."""
    return "srvgg" if isinstance(net_cfg, SrvggConfig) else "span"


def net_config(cfg: ModelConfig, arch: str) -> PriorNetConfig:
    """The network config of `cfg`'s priors of architecture `arch`."""
    if arch == "srvgg":
        return SrvggConfig(features=cfg.srvgg_features, convs=cfg.srvgg_convs, scale=cfg.scale)
    if arch == "span":
        return SpanConfig(channels=cfg.prior_channels, blocks=cfg.prior_blocks, scale=cfg.scale)
    raise ConfigError(f"unknown prior architecture {arch!r}")


def build(net_cfg: PriorNetConfig) -> PriorNet:
    """An untrained prior network of `net_cfg`'s architecture."""
    return Srvgg(net_cfg) if isinstance(net_cfg, SrvggConfig) else Span(net_cfg)


def shallow(net_cfg: PriorNetConfig) -> PriorNetConfig:
    """`net_cfg` cut to one block (SPAN) or two body convs (SRVGG), same widths and scale: a
    cheap stand-in with the per-layer cost of the full network, for timing probes."""
    if isinstance(net_cfg, SrvggConfig):
        return dataclasses.replace(net_cfg, convs=min(net_cfg.convs, 2))
    return dataclasses.replace(net_cfg, blocks=1)


def shape_fields(net_cfg: PriorNetConfig) -> dict[str, int]:
    """The ModelConfig fields that carry `net_cfg`'s shape."""
    if isinstance(net_cfg, SrvggConfig):
        return {"srvgg_features": net_cfg.features, "srvgg_convs": net_cfg.convs}
    return {"prior_channels": net_cfg.channels, "prior_blocks": net_cfg.blocks}


def with_prior_nets(
    cfg: ModelConfig, nets: dict[str, PriorNetConfig], *, keep: bool = True, experts: tuple[int, ...] | None = None,
) -> ModelConfig:
    """`cfg` with the priors `nets` (input name -> network config) put into their slots, in
    PRIOR_INPUTS order; with `keep`, the file's other priors stay; `experts` (default: as in
    `cfg`) are the experts that add them. Every slot takes any architecture; the priors of one
    architecture must share a shape (ConfigError otherwise)."""
    unknown = sorted(set(nets) - set(PRIOR_INPUTS))
    if unknown:
        raise ConfigError(f"unknown prior inputs {unknown}; use {', '.join(PRIOR_INPUTS)}")
    kept = {n: net_config(cfg, cfg.prior_arch(n)) for n in cfg.prior_inputs if keep and n not in nets}
    merged = {**kept, **nets}
    names = tuple(n for n in PRIOR_INPUTS if n in merged)
    fields: dict[str, object] = {}
    for name in names:
        net_cfg = merged[name]
        if net_cfg.scale != cfg.scale:
            raise ConfigError(f"the {name} prior is x{net_cfg.scale}, the model is x{cfg.scale}")
        for key, value in shape_fields(net_cfg).items():
            if fields.setdefault(key, value) != value:
                arch = arch_of(net_cfg)
                raise ConfigError(f"the {name} prior's {arch} shape ({key} {value}) differs from the file's other "
                                  f"{arch} priors ({fields[key]}); all priors of one architecture share a shape")
    archs = tuple(arch_of(merged[n]) for n in names)
    experts = cfg.prior_experts if experts is None else tuple(experts)
    return dataclasses.replace(cfg, prior_inputs=names, prior_archs=archs, prior_experts=experts, **fields)  # type: ignore[arg-type]
