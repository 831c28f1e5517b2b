"""Weights files: safetensors with the config JSON in the metadata, one strict loader, and the
search for the file to run (--weights, $LINEARSR_WEIGHTS, the shipped weights/ files).

Metadata keys (all strings, as safetensors requires):
    format       "linearsr"
    version      "1"
    model        ModelConfig as JSON (scale, patch, experts, boundaries, ...)
    experts      {"count": n, "boundaries": [...], "log_snr_range": [lo, hi]} as JSON
    tagger       tagger id, encoder  text-encoder id
    provenance   JSON: how the weights were made (command, data, hardware, steps)
    training     JSON: per-checkpoint training state (step, loss, val metrics, attention stats)
    priors       JSON, only with a prior: per prior input ("clean", "real") its provenance
                 record (origin, licence, attribution, source SHA-256, fine-tuning), required
Nothing is ever unpickled: safetensors holds raw tensors only.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

import linearsr_cli
from linearsr_cli.config import ModelConfig
from linearsr_cli.errors import ConfigError, WeightsError
from linearsr_cli.fileio import write_atomic
from linearsr_cli.nn.dit import LinearSR

FORMAT = "linearsr"
VERSION = "1"
DEFAULT_TAGGER = "efficientnet-lite0-imagenet"
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
FP32_PARTS = ("priors.",)  # stored in fp32 whatever the export dtype


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about itself, besides the tensors."""

    path: Path
    config: ModelConfig
    tagger: str = DEFAULT_TAGGER
    encoder: str = DEFAULT_ENCODER
    provenance: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    priors: dict[str, Any] = field(default_factory=dict)
    router: dict[str, Any] = field(default_factory=dict)  # --input auto's gate (engine/route.py), {} if none


def save_weights(
    path: str | os.PathLike[str],
    model: LinearSR,
    *,
    tagger: str = DEFAULT_TAGGER,
    encoder: str = DEFAULT_ENCODER,
    provenance: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    priors: Mapping[str, dict[str, Any]] | None = None,
    router: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` and its config atomically (temp file + rename) with what WeightsInfo reads
    back: `priors` the provenance record of each of the model's priors (required for each),
    `router` --input auto's gate (engine/route.Router.to_dict; none when empty). `dtype` casts
    float tensors (but the priors' tensors, which stay fp32)."""
    cfg = model.cfg
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": json.dumps(cfg.to_dict()),
        "experts": json.dumps(
            {
                "count": cfg.num_experts,
                "boundaries": list(cfg.expert_boundaries),
                "log_snr_range": list(cfg.log_snr_range),
            }
        ),
        "tagger": tagger,
        "encoder": encoder,
        "provenance": json.dumps(provenance or {}),
        "training": json.dumps(training or {}, allow_nan=True),
    }
    if cfg.has_prior:
        priors = priors or {}
        missing = [n for n in cfg.prior_inputs if n not in priors]
        if missing:
            raise WeightsError(f"cannot save priors without their provenance (origin, licence): {missing}")
        meta["priors"] = json.dumps({n: priors[n] for n in cfg.prior_inputs})
    if router:
        meta["router"] = json.dumps(dict(router))
    tensors = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point() and not name.startswith(FP32_PARTS):
            value = value.to(dtype)  # priors stay fp32: SPAN works on inputs scaled by 255
        tensors[name] = value.contiguous()
    return write_safetensors(path, tensors, meta)


def write_safetensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Tensors + string metadata as one safetensors file, written atomically (fileio.write_atomic)."""
    path = Path(path)
    try:
        write_atomic(path, save(tensors, metadata=meta))
    except OSError as exc:
        raise WeightsError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def read_safetensors(path: str | os.PathLike[str], fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, metadata) of a safetensors file whose metadata 'format' is `fmt`;
    WeightsError naming the problem otherwise."""
    path = Path(path)
    meta = read_header(path).get("__metadata__") or {}
    if meta.get("format") != fmt:
        raise WeightsError(f"{path}: not a {fmt} file (metadata 'format' is {meta.get('format')!r})")
    try:
        return load_file(str(path), device="cpu"), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read tensors: {exc}") from None


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The safetensors JSON header of `path`, checked for size; raises WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n <= 1 or n > min(size - 8, 100_000_000):
            raise WeightsError(f"{path}: not a safetensors file (bad header length {n})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (header is not an object)")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise WeightsError(f"{path}: truncated: header promises {8 + n + end} bytes, file has {size}")
    return header


def read_info(path: str | os.PathLike[str]) -> WeightsInfo:
    """Parse and validate the metadata of a LinearSR weights file without loading tensors."""
    path = Path(path)
    meta = read_header(path).get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: not a LinearSR weights file (metadata 'format' is {meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if meta.get("version") != VERSION:
        raise WeightsError(f"{path}: unsupported LinearSR weights version {meta.get('version')!r}")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["model"]))
        experts = json.loads(meta.get("experts", "{}"))
        provenance = json.loads(meta.get("provenance", "{}"))
        training = json.loads(meta.get("training", "{}"))
        priors = json.loads(meta.get("priors", "{}"))
        router = json.loads(meta.get("router", "{}"))
    except KeyError as exc:
        raise WeightsError(f"{path}: metadata lacks {exc}") from None
    except (json.JSONDecodeError, TypeError, ConfigError) as exc:
        raise WeightsError(f"{path}: bad model config in metadata: {exc}") from None
    if experts and (
        experts.get("count") != cfg.num_experts
        or [float(b) for b in experts.get("boundaries", [])] != list(cfg.expert_boundaries)
    ):
        raise WeightsError(f"{path}: expert metadata {experts} disagrees with the model config")
    unrecorded = [n for n in cfg.prior_inputs if not isinstance(priors.get(n), dict) or "licence" not in priors[n]]
    if unrecorded:
        raise WeightsError(f"{path}: prior(s) {', '.join(unrecorded)} without a provenance record (origin, licence)")
    return WeightsInfo(
        path=path,
        config=cfg,
        tagger=meta.get("tagger", DEFAULT_TAGGER),
        encoder=meta.get("encoder", DEFAULT_ENCODER),
        provenance=provenance,
        training=training,
        priors=priors,
        router=router,
    )


def load_weights(
    path: str | os.PathLike[str], *, expect_scale: int | None = None
) -> tuple[LinearSR, WeightsInfo]:
    """Build the model a weights file describes and load it strictly (float32, CPU, eval mode).

    Raises WeightsError naming the problem: missing file, not safetensors, truncated, foreign
    metadata, wrong scale, missing/unexpected keys, shape mismatches.
    """
    info = read_info(path)
    cfg = info.config
    if expect_scale is not None and cfg.scale != expect_scale:
        raise WeightsError(f"{info.path}: weights are for x{cfg.scale}, but x{expect_scale} was asked for")
    try:
        tensors = load_file(str(info.path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{info.path}: cannot read tensors: {exc}") from None
    model = LinearSR(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:5])}")
    if extra:
        problems.append(f"unexpected keys ({len(extra)}): {', '.join(extra[:5])}")
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if shapes:
        problems.append(f"shape mismatch ({len(shapes)}): {'; '.join(shapes[:3])}")
    if problems:
        raise WeightsError(f"{info.path}: does not match its config: " + " | ".join(problems))
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    model.eval()
    return model, info


WEIGHTS_ENV = "LINEARSR_WEIGHTS"


SHIPPED_SCALES = (2, 4)


DEFAULT_SCALE = 4


def default_weights_path(scale: int = DEFAULT_SCALE) -> Path:
    """weights/linearsr-x{scale}.safetensors next to the package (the repository root)."""
    return Path(linearsr_cli.__file__).resolve().parents[1] / "weights" / f"linearsr-x{scale}.safetensors"


def installed_scales() -> tuple[int, ...]:
    """The scales whose shipped weights file is present."""
    return tuple(s for s in SHIPPED_SCALES if default_weights_path(s).is_file())


def resolve_weights(option: Path | None, scale: int = DEFAULT_SCALE) -> Path:
    """--weights, else $LINEARSR_WEIGHTS, else the shipped file for `scale`; WeightsError when absent."""
    if option is not None:
        path, origin = Path(option), "--weights"
    elif os.environ.get(WEIGHTS_ENV):
        path, origin = Path(os.environ[WEIGHTS_ENV]), f"${WEIGHTS_ENV}"
    else:
        path, origin = default_weights_path(scale), "default"
    if not path.is_file():
        if origin == "default":
            if scale not in SHIPPED_SCALES:
                shipped = ", ".join(f"x{s}" for s in installed_scales()) or "none"
                raise WeightsError(
                    f"no x{scale} LinearSR model is shipped (installed: {shipped}); for a x{scale} output use "
                    f"--outscale {scale}, or give --weights for a x{scale} weights file"
                )
            raise WeightsError(
                f"no x{scale} LinearSR weights are installed (looked for {path}). The shipped files live in "
                "the repository's weights/ folder: restore them with `git checkout weights/` in the checkout "
                f"(or a fresh clone), or point --weights / ${WEIGHTS_ENV} at a weights file; to train your own, "
                "`linearsr train` (weights/MODEL_CARD.md has the exact recipe)."
            )
        raise WeightsError(f"{origin} names {path}, which does not exist")
    return path

