"""`linearsr info`: versions, devices, the CPU's dtype and prior-backend choices, and what each
shipped or given weights file holds (its priors and its --input auto router)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

import linearsr_cli
from linearsr_cli import checkpoints
from linearsr_cli.checkpoints import SHIPPED_SCALES, read_info, resolve_weights
from linearsr_cli.engine.device import available_devices, choose_dtype, cpu_bf16, cpu_prior_backend
from linearsr_cli.errors import DeviceError, LinearSRError
from linearsr_cli.nn.span import SpanConfig


def describe_router(router: dict[str, Any] | None) -> str:
    """One line on a weights file's --input auto: no router, fitted on how many crops, the run
    kinds where the weights fix it to a measured constant, and those where an unsure gate blends
    the priors."""
    if not router:
        return "no router: --input auto takes the first prior without looking (a warning says so)"
    crops = (router.get("fitted") or {}).get("crops")
    text = "router fitted" + (f" on {crops} crops" if crops else "")
    fixed = router.get("fixed") or {}
    if fixed:
        text += "; auto fixed to " + ", ".join(f"'{v}' for {k} runs" for k, v in sorted(fixed.items()))
    blend = router.get("blend") or {}
    if blend:
        text += f"; blends both priors when unsure ({', '.join(blend.get('runs', []))} runs)"
    if router.get("multi_step"):
        text += "; a gate of its own for multi-step runs"
    return text


def shipped_file_info(scale: int) -> dict[str, Any]:
    """One shipped weights file for `linearsr info`: its name, whether it is present, its priors
    and its router (describe_router); an unreadable file says why."""
    path = checkpoints.default_weights_path(scale)  # looked up at call time: tests point it elsewhere
    entry: dict[str, Any] = {"file": path.name, "scale": scale, "present": path.is_file()}
    if not entry["present"]:
        entry["router"] = "missing: restore it with `git checkout weights/`"
        return entry
    try:
        meta = read_info(path)
    except LinearSRError as exc:
        entry["error"] = str(exc)
        return entry
    entry["priors"] = list(meta.config.prior_inputs)
    entry["has_router"] = bool(meta.router)
    entry["router"] = describe_router(meta.router)
    return entry


def system_info(weights: Path | None = None) -> dict[str, Any]:
    """Versions, devices, dtype choices and the installed weights, for `linearsr info`."""
    import numpy
    import PIL

    report: dict[str, Any] = {
        "linearsr": linearsr_cli.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "threads": torch.get_num_threads(),
        "devices": available_devices(),
    }
    decision = cpu_bf16()
    report["cpu"] = {
        "capability": decision.capability,
        "bf16": decision.use_bf16,
        "why": decision.reason,
        "fp32_gflops": decision.fp32_gflops,
        "bf16_gflops": decision.bf16_gflops,
    }
    try:  # the library that runs the shipped priors' shape (SPAN, 52 channels, 6 blocks) here
        prior = cpu_prior_backend(SpanConfig())
        report["cpu"] |= {"prior_backend": prior.backend, "prior_backend_why": prior.reason}
    except DeviceError as exc:  # a bad LINEARSR_PRIOR_BACKEND
        report["cpu"] |= {"prior_backend": None, "prior_backend_why": str(exc)}
    auto = {}
    for name in ("cpu", "cuda", "mps"):
        if name == "cpu" or any(d.startswith(name) for d in report["devices"]):
            dt = choose_dtype("auto", torch.device(name))
            auto[name] = "fp32" if dt is None else str(dt).removeprefix("torch.")
    report["auto_dtype"] = auto
    report["shipped_weights"] = [shipped_file_info(s) for s in SHIPPED_SCALES]
    try:
        path = resolve_weights(weights)
        meta = read_info(path)
        report["weights"] = {
            "path": str(path),
            "scale": meta.config.scale,
            "experts": meta.config.num_experts,
            "boundaries": list(meta.config.expert_boundaries),
            "dim": meta.config.dim,
            "depth": meta.config.depth,
            "tagger": meta.tagger,
            "encoder": meta.encoder,
            "priors": {
                name: {k: rec.get(k) for k in ("origin", "licence", "attribution")} | {
                    "fine_tuned_steps": sum(int(f.get("step", 0)) for f in rec.get("fine_tuning", []))
                }
                for name, rec in meta.priors.items()
            },
            "prior_experts": list(meta.config.prior_experts),
            # --input auto: how the router was fitted, the run kinds where it is a measured constant,
            # and its blend of both priors where it is unsure (None: none)
            "router": {key: meta.router.get(key, default)
                       for key, default in (("fitted", {}), ("fixed", {}), ("blend", None), ("multi_step", None))}
            if meta.router else None,
            "provenance": meta.provenance,
        }
    except LinearSRError as exc:
        report["weights"] = {"error": str(exc)}
    return report

