"""The LinearSR training recipe: [stage 0: fine-tune the prior] -> stage 1 -> ESGF knee -> stage 2
(one fine-tune per SNR expert; the structure expert over the priors) -> export of a 4-expert
weights file. Every phase is resumable, and `run_recipe` keeps its
progress in `recipe.json` in the run directory, so it can run in bounded pieces (`max_minutes`).

Run directory layout:
    recipe.json              config + finished phases
    stage0/                  prior checkpoints (SPAN fine-tuned on real-world degradations)
    stage1/                  ckpt-NNNNNNN.safetensors (+ .state.safetensors/.state.json), train_log.jsonl
    knee.json, knee.safetensors   the select-knee result and a link to the chosen checkpoint
    stage2/expert{i}/        one run per expert, initialised from the chosen stage-1 checkpoint
    linearsr_x{scale}.safetensors  the exported model
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from linearsr_cli.checkpoints import load_weights, read_info, save_weights
from linearsr_cli.config import PRIOR_INPUTS, ModelConfig, inputs_for
from linearsr_cli.engine.device import distributed_rank
from linearsr_cli.engine.route import BLEND_RUNS, parse_fixed, prior_indices
from linearsr_cli.errors import ConfigError, TrainingError
from linearsr_cli.esgf.probe import Pair, link_checkpoint, select_knee
from linearsr_cli.fileio import write_atomic
from linearsr_cli.nn.dit import LinearSR
from linearsr_cli.nn.prior_nets import with_prior_nets
from linearsr_cli.tag.training import TagKind, make_tag_source
from linearsr_cli.train.config import OptimConfig, PriorTrainConfig, TrainConfig, TSampling
from linearsr_cli.train.data import DataConfig, PairDataset, validation_pairs
from linearsr_cli.train.loop import (
    DatasetBatches,
    StartFn,
    TrainResult,
    checkpoint_name,
    expert_t_range,
    list_checkpoints,
    train,
)
from linearsr_cli.train.losses import LossWeights, PriorLossWeights
from linearsr_cli.train.report import TrainReporter

EXPORT_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
Notify = Callable[[str], None]


def storage_dtype(name: str) -> torch.dtype | None:
    """The dtype an export named `name` stores its experts in (None = fp32); ConfigError for a
    name not in EXPORT_DTYPES."""
    if name not in EXPORT_DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(EXPORT_DTYPES)}, got {name!r}")
    return EXPORT_DTYPES[name]


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def knee_val_pairs(root: str | os.PathLike[str], scale: int, limit: int = 0) -> list[Pair]:
    """Pairs for `select-knee --val`: a training-data root (with val/) gives its fixed validation
    crops, any other folder its lr/ + hr/ pairs (esgf.probe.load_val_pairs)."""
    from linearsr_cli.esgf.probe import load_val_pairs

    if (Path(root) / "val").is_dir():
        pairs = list(validation_pairs(DataConfig(root=str(root), scale=scale)))
        return pairs[:limit] if limit else pairs
    return load_val_pairs(root, scale=scale, limit=limit)


def make_val_pairs(data: DataConfig, *, size: int = 256, count: int = 4) -> list[Pair]:
    """The fixed validation crops used by every checkpoint probe of a run."""
    pairs = validation_pairs(data, size=size)
    return pairs[:count] if count else pairs


# ----------------------------------------------------------------------------- the stages


def run_stage0(
    prior: str,
    data: DataConfig,
    cfg: PriorTrainConfig,
    run_dir: Path,
    *,
    val_size: int = 256,
    val_count: int = 4,
    device: torch.device | None = None,
    deadline: float | None = None,
    dataset: PairDataset | None = None,
    reporter: TrainReporter | None = None,
    teacher_crops: int = 0,
) -> TrainResult:
    """Stage 0: fine-tune the prior `prior` (a released SPAN name, 'span', or a prior file) on
    `data`'s degradation with the objective `cfg` selects (L1; + ST-LPIPS, GAN, unsharp-masked
    target, distillation), resumable in `run_dir`; every checkpoint is a prior file scored on
    bicubic and on realistic validation crops. `teacher_crops` > 0: the run draws from that many
    crops, whose Real-ESRGAN x4plus outputs are computed once into `run_dir` (train/teacher.py)."""
    from linearsr_cli.priors import resolve_prior
    from linearsr_cli.train.prior import train_prior

    torch.manual_seed(cfg.optim.seed)
    span, record = resolve_prior(prior, data.scale)
    rank, world = distributed_rank()
    if world > 1:
        raise TrainingError("stage 0 runs in one process (the prior is small); start it without torchrun")
    if teacher_crops > 0:
        data = dataclasses.replace(data, epoch_size=teacher_crops)
    dataset = dataset or PairDataset(data, "train")
    val = {
        kind: (pairs[:val_count] if val_count else pairs)
        for kind in ("bicubic", "realistic")
        for pairs in [validation_pairs(data, size=val_size, degradation=kind)]
    }
    teacher = None
    if teacher_crops > 0:
        teacher = _teacher_outputs(dataset, data, teacher_crops, run_dir, cfg.optim.batch_size, reporter)
    return train_prior(
        span.train(), record, DatasetBatches(dataset, cfg.optim.batch_size), cfg, run_dir, val=val, device=device,
        deadline=deadline, data={"degradation": data.degradation, "crop": data.crop, "root": data.root,
                                 **({"crops": teacher_crops} if teacher_crops else {})},
        reporter=reporter, teacher=teacher, teacher_record=teacher.record if teacher else None,
    )


def _teacher_outputs(dataset: PairDataset, data: DataConfig, count: int, run_dir: Path, batch_size: int,
                     reporter: TrainReporter | None) -> Any:
    """Real-ESRGAN x4plus's outputs on crops [0, count) of `dataset`, from the run's cache (made
    once, ncnn on the CPU)."""
    from linearsr_cli.evaluate.peers import make_peer
    from linearsr_cli.train.teacher import TeacherOutputs, build_cache, cache_key

    if data.scale != 4:
        raise ConfigError("the distillation teacher (Real-ESRGAN x4plus) is x4 only")
    path = Path(run_dir) / f"teacher-{cache_key(data, count)}.safetensors"
    if not path.is_file():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        peer = make_peer("realesrgan", 4)
        build_cache(dataset, count, path, peer.upscale)
    return TeacherOutputs(path, batch_size)


def photo_map(dataset: PairDataset) -> dict[str, Any]:
    """Photo name -> decoded HR photo, for tagging each training photo once."""
    return dict(zip(dataset.names, dataset.photos, strict=True))


def run_stage1(
    model_cfg: ModelConfig,
    data: DataConfig,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    val_pairs: Sequence[Pair] = (),
    tags: bool = False,
    device: torch.device | None = None,
    deadline: float | None = None,
    provenance: dict[str, Any] | None = None,
    dataset: PairDataset | None = None,
    reporter: TrainReporter | None = None,
) -> TrainResult:
    """Stage 1: one base denoiser (num_experts = 1) over all t, resumable in `run_dir`."""
    torch.manual_seed(cfg.optim.seed)
    model = LinearSR(model_cfg.with_experts(1))
    rank, world = distributed_rank()
    dataset = dataset or PairDataset(data, "train")
    batches = DatasetBatches(dataset, cfg.optim.batch_size, rank=rank, world=world)
    return train(
        model, batches, cfg.replace(t_range=(0.0, 1.0)), run_dir,
        val_pairs=val_pairs, tag_source=make_tag_source(tags, photo_map(dataset), scale=model_cfg.scale), device=device,
        deadline=deadline,
        provenance=provenance, training_meta={"stage": 1}, reporter=reporter,
    )


def stage2_config(cfg: TrainConfig, model_cfg: ModelConfig, expert: int) -> TrainConfig:
    """The stage-2 config of one expert: t limited to its SNR interval; t = 1 samples and no
    perceptual (LPIPS) loss for the structure expert (index 0, the fidelity 1-NFE pass); a distinct
    seed per expert."""
    t_range = expert_t_range(model_cfg, expert)
    structure = t_range[1] >= 1.0
    return cfg.replace(
        t_range=t_range, p_one=cfg.sampling.p_one if structure else 0.0, seed=cfg.optim.seed + 101 * expert,
        lpips_weight=0.0 if structure else cfg.loss.lpips_weight,
    )


def run_stage2(
    init: Path,
    expert: int,
    data: DataConfig,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    num_experts: int = 4,
    val_pairs: Sequence[Pair] = (),
    tags: bool = False,
    tag_kind: TagKind = "tags",
    device: torch.device | None = None,
    deadline: float | None = None,
    provenance: dict[str, Any] | None = None,
    dataset: PairDataset | None = None,
    priors: dict[str, str] | None = None,
    prior_experts: Sequence[int] = (0,),
    reporter: TrainReporter | None = None,
    start_from_prior: bool = False,
) -> TrainResult:
    """Stage 2 for one expert: start from the stage-1 checkpoint `init` (or, when `init` is a
    finished `num_experts` mixture, from that mixture's own expert `expert`: it continues), fine-tune
    on the t interval of expert `expert` of a `num_experts` mixture only. Pass `dataset` to reuse
    decoded photos across experts. tag_kind "visual" trains the TAG ablation's visual-token arm.

    `priors` maps prior inputs ("clean", "real") to prior specs (priors.resolve_prior); an
    expert listed in `prior_experts` then carries them (frozen) and starts as the prior exactly:
    its trunk comes from `init`, its output head is zeroed, so it learns a correction. With
    `start_from_prior` a refinement expert (not in `prior_experts`) learns on x_t noised from
    the priors' output instead of HR (prior_start): the input it meets after the structure step."""
    model, info = load_weights(init)
    n = info.config.num_experts
    if n == num_experts and n > 1:
        model = mixture_expert(model, expert, init)
    elif n != 1:
        raise TrainingError(f"{init}: stage 2 starts from a 1-expert stage-1 checkpoint or a {num_experts}-expert "
                            f"mixture, this has {n} experts")
    elif info.config.has_prior:
        raise TrainingError(f"{init}: stage 2 starts from a stage-1 checkpoint without a prior")
    full = model.cfg.with_experts(num_experts)
    cfg2 = stage2_config(cfg, full, expert)
    records, start = None, None
    if priors and expert in prior_experts:
        model, records = attach_priors(model, priors)
    elif start_from_prior:
        if not priors:
            raise ConfigError("starting from the prior needs the priors (--prior-clean / --prior-real)")
        start = prior_start(model, priors, device or torch.device("cpu"))
    rank, world = distributed_rank()
    dataset = dataset or PairDataset(data, "train")
    batches = DatasetBatches(dataset, cfg2.optim.batch_size, rank=rank, world=world)
    meta = {"stage": 2, "expert": expert, "num_experts": num_experts, "init": str(init),
            "init_step": int(info.training.get("step", -1)), "guidance": tag_kind if tags else "none"}
    if start is not None:
        meta["start"] = {"from": "prior", "priors": dict(priors or {})}
    return train(
        model.train(), batches, cfg2, run_dir, val_pairs=val_pairs,
        tag_source=make_tag_source(tags, photo_map(dataset), scale=full.scale, kind=tag_kind),
        device=device, deadline=deadline, provenance=provenance, training_meta=meta, reporter=reporter, priors=records,
        start=start,
    )


def mixture_expert(model: LinearSR, expert: int, source: Path) -> LinearSR:
    """Expert `expert` of the mixture `model` (read from `source`) as a 1-expert network without
    priors, to go on training it. Only a refinement expert: the one carrying the priors is
    trained anew from a stage-1 checkpoint."""
    cfg = model.cfg
    check_refinement_expert(cfg, expert, source)
    one = LinearSR(cfg.without_prior().with_experts(1))
    one.experts[0].load_state_dict(model.experts[expert].state_dict())
    return one


def check_refinement_expert(cfg: ModelConfig, expert: int, source: Path) -> None:
    """ConfigError unless `expert` is a refinement expert of `cfg` (one that exists and carries no
    prior): the only experts stage 2 continues and `revise_weights` replaces."""
    if not 0 <= expert < cfg.num_experts:
        raise ConfigError(f"{source}: has {cfg.num_experts} experts, no expert {expert}")
    if expert in cfg.prior_experts or expert in cfg.bare_experts:
        raise ConfigError(f"{source}: expert {expert} carries the priors; only refinement experts go on training "
                          "or are replaced (start the structure expert from a stage-1 checkpoint)")


def prior_start(model: LinearSR, priors: dict[str, str], device: torch.device) -> StartFn:
    """The structure expert's x0 estimate of a batch, the priors alone (frozen, no gradient; each
    sample through the prior its degradation kind is served by): at inference the first
    refinement expert denoises this estimate noised to its t, not HR's."""
    bare, _ = attach_priors(model, priors, bare=True)
    bare = bare.to(device).eval()

    def start(lr: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return bare.prior_residual(lr, prior_indices(bare.cfg, inputs_for(kinds)))

    return start


def _load_priors(priors: dict[str, str], scale: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{input: (prior network, provenance record)} in config.PRIOR_INPUTS order."""
    from linearsr_cli.priors import resolve_prior

    unknown = sorted(set(priors) - set(PRIOR_INPUTS))
    if unknown:
        raise ConfigError(f"unknown prior inputs {unknown}; use {', '.join(PRIOR_INPUTS)}")
    return {n: resolve_prior(priors[n], scale) for n in PRIOR_INPUTS if n in priors}


def attach_priors(
    model: LinearSR, priors: dict[str, str], *, bare: bool = False
) -> tuple[LinearSR, dict[str, dict[str, Any]]]:
    """(a copy of the 1-expert `model` whose expert adds the given priors (frozen), starting as
    the prior exactly: its output head is zeroed, so it learns a correction; the priors'
    provenance records). With `bare` the expert keeps no network at all
    (ModelConfig.bare_experts): it is the prior. Priors of one architecture must share a shape
    (nn/prior_nets.with_prior_nets)."""
    spans = _load_priors(priors, model.cfg.scale)
    cfg = with_prior_nets(model.cfg, {n: net.cfg for n, (net, _) in spans.items()}, keep=False, experts=(0,))
    cfg = dataclasses.replace(cfg, bare_experts=(0,) if bare else ())
    out = LinearSR(cfg)
    if not bare:
        out.experts.load_state_dict(model.experts.state_dict())
        head = out.experts[0].head
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    for name, (span, _) in spans.items():
        out.priors[name].load_state_dict(span.state_dict())
    out.priors.requires_grad_(False)
    return out, {name: record for name, (_, record) in spans.items()}


def write_bare_expert(init: Path, priors: dict[str, str], out: Path, provenance: dict[str, Any] | None = None) -> Path:
    """The structure expert as the priors alone (no network), as a 1-expert checkpoint that
    export_model takes like a trained one; `init` only lends the architecture of the others."""
    model, info = load_weights(init)
    bare, records = attach_priors(model, priors, bare=True)
    training = {"stage": 2, "expert": 0, "step": 0, "init": str(init), "init_step": int(info.training.get("step", -1)),
                "t_range": list(expert_t_range(bare.cfg.with_experts(4), 0)), "note": "prior only (bare expert)"}
    return save_weights(out, bare, provenance=provenance, training=training, priors=records)


def revise_weights(
    src: Path, out: Path, *, priors: dict[str, str] | None = None, router: dict[str, Any] | None = None,
    router_from: Path | None = None, fixed: dict[str, str] | None = None, dtype: str = "fp16", note: str = "",
    experts: dict[int, Path] | None = None,
) -> Path:
    """Write `src` again as `out` with priors added or replaced (input name -> prior spec, as
    resolve_prior takes), refinement experts replaced (index -> a 1-expert stage-2 checkpoint of
    the same network), a router (engine/route.py) set, or taken from the weights file
    `router_from`, and/or the router's fixed routes changed (run kind -> clean|real, or auto to
    route again: Router.fixed); everything else is kept as is. `note` is appended to the
    provenance's "revisions"."""
    storage = storage_dtype(dtype)
    model, info = load_weights(src)
    records, gate = dict(info.priors), dict(info.router)
    prov = dict(info.provenance)
    if experts:
        prov["experts"] = _replace_experts(model, experts, list(prov.get("experts") or []), src)
    if priors:
        if not model.cfg.has_prior:
            raise ConfigError(f"{src}: has no prior to add to")
        nets = _load_priors(priors, model.cfg.scale)
        cfg = with_prior_nets(model.cfg, {n: net.cfg for n, (net, _) in nets.items()})  # any slot, any architecture
        new = LinearSR(cfg)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f"priors.{n}." for n in nets))}
        for name, (net, record) in nets.items():
            state.update({f"priors.{name}.{k}": v for k, v in net.state_dict().items()})
            records[name] = record
        new.load_state_dict(state, strict=True)
        records = {n: records[n] for n in cfg.prior_inputs}
        model = new
    if router_from is not None:
        router = read_info(router_from).router
        if not router:
            raise ConfigError(f"{router_from}: has no router to take")
    if router is not None:
        gate = dict(router)
    if fixed:
        if not gate:
            raise ConfigError(f"{src}: has no router whose routes could be fixed")
        try:
            routes = {**dict(gate.get("fixed") or {}), **fixed}
            routes = parse_fixed({k: v for k, v in routes.items() if v != "auto"})
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        gate = {**gate, "fixed": routes}
    prov["revisions"] = [*prov.get("revisions", []), {"from": src.name, "priors": sorted(priors or {}),
                                                      "experts": sorted(experts or {}),
                                                      "router": router is not None, "note": note}]
    return save_weights(out, model, tagger=info.tagger, encoder=info.encoder, provenance=prov,
                        training=info.training, priors=records, router=gate, dtype=storage)


def _replace_experts(model: LinearSR, experts: dict[int, Path], records: list[Any], src: Path) -> list[Any]:
    """Load each checkpoint's network into `model`'s expert (in place); the provenance's expert
    records with those entries replaced."""
    cfg = model.cfg
    for e, path in sorted(experts.items()):
        check_refinement_expert(cfg, e, src)
        part, info = load_weights(path)
        if info.config.num_experts != 1 or part.cfg.without_prior() != cfg.without_prior().with_experts(1):
            raise ConfigError(f"{path}: not a 1-expert checkpoint of {src}'s network")
        model.experts[e].load_state_dict(part.experts[0].state_dict())
        entry = {"checkpoint": str(path), "step": info.training.get("step"), "t_range": info.training.get("t_range")}
        records = records + [None] * (e + 1 - len(records))
        records[e] = entry
    return records


def add_router(
    src: Path, out: Path, data: DataConfig, count: int, *, samples: str = "", dtype: str = "fp16",
    fixed: dict[str, str] | None = None, features: Sequence[str] | None = None,
    blend_runs: Sequence[str] = BLEND_RUNS,
) -> tuple[Path, Any]:
    """Fit --input auto's gate (train/router.py) for `src` on `count` training crops of `data`
    (on `features` only, default all; with its Blend for the run kinds `blend_runs`) and write `src` again as `out` with it; `samples` names a
    file of fitting crops to reuse when it exists, or to write. Returns (the written path, the
    Router)."""
    from linearsr_cli.engine.route import FEATURES
    from linearsr_cli.train.router import fit, load_samples, router_samples, save_samples

    if samples and Path(samples).is_file():
        crops = load_samples(samples)
    else:
        model, _ = load_weights(src)
        crops = router_samples(model, data, count)
        if samples:
            save_samples(crops, samples)
    router = fit(crops, data, features or FEATURES, blend_runs)
    path = revise_weights(src, out, router=router.to_dict(), dtype=dtype,
                          note=f"router fitted on {len(crops)} training crops")
    return path, router


def final_checkpoint(run_dir: Path) -> Path:
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise TrainingError(f"{run_dir}: no checkpoints")
    return ckpts[-1][1]


def export_model(
    expert_ckpts: Sequence[Path],
    out: Path,
    *,
    dtype: str = "fp32",
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Assemble single-expert checkpoints (expert 0, 1, ...) into one LinearSR weights file,
    optionally stored in fp16/bf16 (loading casts back to fp32). Experts whose checkpoint carries
    a prior keep it; those priors must be identical (one copy is stored)."""
    storage = storage_dtype(dtype)
    if len(expert_ckpts) not in (1, 2, 4):
        raise ConfigError(f"need 1, 2 or 4 expert checkpoints, got {len(expert_ckpts)}")
    parts = [load_weights(p) for p in expert_ckpts]
    base = parts[0][1].config.without_prior()
    carriers = [i for i, (_, info) in enumerate(parts) if info.config.has_prior]
    for (_, info), p in zip(parts, expert_ckpts, strict=True):
        if info.config.num_experts != 1:
            raise TrainingError(f"{p}: expected a single-expert checkpoint")
        if info.config.without_prior() != base:
            raise TrainingError(f"{p}: architecture differs from {expert_ckpts[0]}")
    cfg = base.with_experts(len(parts))
    bare = tuple(i for i, (_, info) in enumerate(parts) if info.config.bare_experts)
    if carriers:
        src = parts[carriers[0]][0]
        for i in carriers[1:]:
            other = parts[i][0]
            same = other.cfg.prior_fields() == src.cfg.prior_fields() and all(
                torch.equal(a, b) for a, b in zip(other.priors.state_dict().values(), src.priors.state_dict().values(), strict=True)
            )
            if not same:
                raise TrainingError(f"{expert_ckpts[i]}: its prior differs from {expert_ckpts[carriers[0]]}'s")
        cfg = dataclasses.replace(cfg, **src.cfg.prior_fields(), prior_experts=tuple(carriers), bare_experts=bare)
    model = LinearSR(cfg)
    for i, (m, _) in enumerate(parts):
        model.experts[i].load_state_dict(m.experts[0].state_dict())
    if carriers:
        src = parts[carriers[0]][0]
        model.priors.load_state_dict(src.priors.state_dict())
    prov = dict(provenance or {})
    prov["experts"] = [
        {"checkpoint": str(p), "step": info.training.get("step"), "t_range": info.training.get("t_range")}
        for p, (_, info) in zip(expert_ckpts, parts, strict=True)
    ]
    records = parts[carriers[0]][1].priors if carriers else None
    return save_weights(out, model, provenance=prov, priors=records, dtype=storage)


# ----------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class RecipeConfig:
    """Everything `linearsr train recipe` does; stored in recipe.json on the first run. The
    defaults are the shipped model's recipe (weights/MODEL_CARD.md)."""

    model: ModelConfig = field(default_factory=lambda: ModelConfig(dim=128, depth=6, heads=4, stem_blocks=4))
    data: DataConfig = field(default_factory=lambda: DataConfig(crop=64, degradation="mixed"))
    stage1: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            optim=OptimConfig(steps=8000, batch_size=16, lr=1e-3, warmup=100, ckpt_every=500),
            sampling=TSampling(p_one=0.4),
        )
    )
    stage2: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            optim=OptimConfig(steps=3000, batch_size=16, lr=3e-4, warmup=20, ckpt_every=500),
            sampling=TSampling(p_one=0.4), loss=LossWeights(lpips_weight=1.0),
        )
    )
    init: str = "knee"  # stage 2 starts from the "knee" or (for comparison) the "last" checkpoint
    tags: bool = True
    export_dtype: str = "fp16"
    val_size: int = 256
    val_count: int = 5
    # the structure expert's prior: "" = none; else the released SPAN ("span") as the "clean"
    # prior, and its stage-0 fine-tune on `prior_degradation` crops of `prior_crop` as "real"
    prior: str = "span"
    stage0: PriorTrainConfig = field(
        default_factory=lambda: PriorTrainConfig(optim=OptimConfig(steps=2000, batch_size=16, lr=1e-4, warmup=50,
                                                                   ckpt_every=250))
    )
    prior_crop: int = 128
    prior_degradation: str = "mixed"
    # measured (weights/MODEL_CARD.md): a DiT correction on top of the prior adds nothing, so the
    # structure expert is the prior alone unless asked to train one
    train_structure_expert: bool = False
    # the texture prior: the real prior fine-tuned further on realistic crops with the Real-ESRGAN
    # recipe (L1 1 + ST-LPIPS 1 + GAN 0.1 on unsharp-masked HR, EMA); its last checkpoint serves
    # real inputs of multi-step runs (engine/route.prior_for). Measured (weights/MODEL_CARD.md): 200
    # steps beat the knee and the end of 700-step runs on the held-out crops, and longer runs
    # spiked. steps = 0: no texture prior.
    texture: PriorTrainConfig = field(
        default_factory=lambda: PriorTrainConfig(
            optim=OptimConfig(steps=200, batch_size=4, lr=1e-4, warmup=0, ckpt_every=100, ema_decay=0.999),
            loss=PriorLossWeights(l1_weight=1.0, lpips_weight=1.0, lpips_samples=0, gan_weight=0.1, usm_target=True),
        )
    )
    texture_degradation: str = "realistic"
    router_crops: int = 400  # --input auto's gate, fitted on this many training crops (0 = none) ...
    router_crop: int = 512  # ... of this HR side (the held-out evaluation crops' size)

    def __post_init__(self) -> None:
        if self.init not in ("knee", "last"):
            raise ConfigError(f"init must be 'knee' or 'last', got {self.init!r}")
        storage_dtype(self.export_dtype)  # raises for an unknown name

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "data": dataclasses.asdict(self.data),
            "stage1": self.stage1.to_dict(),
            "stage2": self.stage2.to_dict(),
            "init": self.init,
            "tags": self.tags,
            "export_dtype": self.export_dtype,
            "val_size": self.val_size,
            "val_count": self.val_count,
            "prior": self.prior,
            "stage0": self.stage0.to_dict(),
            "prior_crop": self.prior_crop,
            "prior_degradation": self.prior_degradation,
            "train_structure_expert": self.train_structure_expert,
            "texture": self.texture.to_dict(),
            "texture_degradation": self.texture_degradation,
            "router_crops": self.router_crops,
            "router_crop": self.router_crop,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecipeConfig:
        return cls(
            model=ModelConfig.from_dict(d["model"]),
            data=DataConfig(**d["data"]),
            stage1=TrainConfig.from_dict(d["stage1"]),
            stage2=TrainConfig.from_dict(d["stage2"]),
            **{k: d[k] for k in ("init", "tags", "export_dtype", "val_size", "val_count")},
            **{k: d[k] for k in ("prior", "prior_crop", "prior_degradation", "train_structure_expert",
                                 "texture_degradation", "router_crops", "router_crop") if k in d},
            **({"stage0": PriorTrainConfig.from_dict(d["stage0"])} if "stage0" in d else {}),
            **({"texture": PriorTrainConfig.from_dict(d["texture"])} if "texture" in d else {}),
        )

    @property
    def prior_data(self) -> DataConfig:
        """The data of stage 0: larger crops (SPAN's receptive field) on the prior's degradation."""
        return dataclasses.replace(self.data, crop=self.prior_crop, degradation=self.prior_degradation)


@dataclass
class RecipeStatus:
    done: bool
    phases: dict[str, Any]
    weights: Path | None = None
    message: str = ""


def _load_state(out: Path) -> dict[str, Any] | None:
    path = out / "recipe.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"{path}: unreadable recipe state: {exc}") from None


def _save_state(out: Path, state: dict[str, Any]) -> None:
    try:
        write_atomic(out / "recipe.json", json.dumps(state, indent=1).encode("utf-8"))
    except OSError as exc:
        raise TrainingError(f"{out / 'recipe.json'}: cannot write recipe state: {exc.strerror or exc}") from None


def run_recipe(
    out: str | os.PathLike[str],
    cfg: RecipeConfig | None = None,
    *,
    device: torch.device | None = None,
    max_minutes: float | None = None,
    notify: Notify | None = None,
    command: str = "",
    reporter: TrainReporter | None = None,
) -> RecipeStatus:
    """Run (or continue) the whole recipe in `out`. With `cfg` None the stored config is used;
    a different `cfg` for an existing run is refused. Returns done=False when the time budget
    ran out (run again to continue). Raises TrainingError on divergence."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    note = notify or (lambda _msg: None)
    device = device or torch.device("cpu")
    deadline = time.monotonic() + 60.0 * max_minutes if max_minutes else None
    state = _load_state(out)
    if state is None:
        if cfg is None:
            raise ConfigError(f"{out}: no recipe.json here; give the recipe options to start a run")
        state = {"config": cfg.to_dict(), "phases": {}, "command": command}
        _save_state(out, state)
    else:
        stored = RecipeConfig.from_dict(state["config"])
        if cfg is not None and cfg != stored:
            raise ConfigError(
                f"{out} already holds a recipe with different settings; to continue it give the same options "
                "(rerun the same command), or use a new --out"
            )
        cfg = stored
    phases: dict[str, Any] = state["phases"]
    provenance = {
        "command": state.get("command") or command,
        "recipe": cfg.to_dict(),
        "hardware": _hardware(device),
        "torch": torch.__version__,
    }
    val = make_val_pairs(cfg.data, size=cfg.val_size, count=cfg.val_count)
    photos: list[PairDataset] = []

    def dataset() -> PairDataset:
        if not photos:
            photos.append(PairDataset(cfg.data, "train"))
        return photos[0]

    def paused(result: TrainResult, phase: str) -> RecipeStatus | None:
        if result.status == "paused":
            msg = f"time budget reached in {phase} at step {result.step}; run the same command again to continue"
            note(msg)
            return RecipeStatus(False, phases, message=msg)
        return None

    if cfg.prior and phases.get("stage0") != "done":
        note(f"stage 0: fine-tune the {cfg.prior} prior, {cfg.stage0.optim.steps} steps on {cfg.prior_degradation} crops")
        r = run_stage0(cfg.prior, cfg.prior_data, cfg.stage0, out / "stage0", val_size=cfg.val_size,
                       val_count=cfg.val_count, device=device, deadline=deadline, reporter=reporter)
        if (p := paused(r, "stage 0")) is not None:
            return p
        phases["stage0"] = "done"
        _save_state(out, state)
    priors = {"clean": cfg.prior, "real": str(final_checkpoint(out / "stage0"))} if cfg.prior else None

    texture = cfg.prior and cfg.texture.optim.steps > 0
    if texture and "texture" not in phases:
        note(f"texture prior: the real prior, {cfg.texture.optim.steps} adversarial steps on {cfg.texture_degradation} crops")
        data = dataclasses.replace(cfg.prior_data, degradation=cfg.texture_degradation)
        r = run_stage0(priors["real"], data, cfg.texture, out / "texture", val_size=cfg.val_size,
                       val_count=cfg.val_count, device=device, deadline=deadline, reporter=reporter)
        if (p := paused(r, "texture prior")) is not None:
            return p
        phases["texture"] = {"checkpoint": str(final_checkpoint(out / "texture"))}
        _save_state(out, state)

    if phases.get("stage1") != "done":
        note(f"stage 1: {cfg.stage1.optim.steps} steps, batch {cfg.stage1.optim.batch_size}, crop {cfg.data.crop}")
        r = run_stage1(cfg.model, cfg.data, cfg.stage1, out / "stage1", val_pairs=val, tags=cfg.tags,
                       device=device, deadline=deadline, provenance=provenance, dataset=dataset(), reporter=reporter)
        if (p := paused(r, "stage 1")) is not None:
            return p
        phases["stage1"] = "done"
        _save_state(out, state)

    if "knee" not in phases:
        sel = select_knee(out / "stage1")
        (out / "knee.json").write_text(json.dumps(sel.to_json(), indent=1))
        knee = sel.knee_path
        last = sel.probes[-1].path
        chosen = knee if cfg.init == "knee" else last
        link_checkpoint(chosen, out / "knee.safetensors")
        phases["knee"] = {"knee": str(knee), "last": str(last), "chosen": str(chosen)}
        note(f"ESGF: knee at step {sel.probes[sel.report.knee].step}; stage 2 starts from {chosen.name}")
        _save_state(out, state)

    init = Path(phases["knee"]["chosen"])
    n = cfg.model.num_experts
    for e in range(n):
        key = f"stage2/expert{e}"
        if phases.get(key) == "done":
            continue
        if e == 0 and priors and not cfg.train_structure_expert:
            write_bare_expert(init, priors, out / "stage2" / "expert0" / checkpoint_name(0), provenance)
            note("stage 2, expert 1/4: the structure expert is the prior alone (no network)")
            phases[key] = "done"
            _save_state(out, state)
            continue
        note(f"stage 2, expert {e + 1}/{n}: {cfg.stage2.optim.steps} steps from {init.name}")
        r = run_stage2(init, e, cfg.data, cfg.stage2, out / "stage2" / f"expert{e}", num_experts=n,
                       val_pairs=val, tags=cfg.tags, device=device, deadline=deadline, provenance=provenance,
                       dataset=dataset(), priors=priors, reporter=reporter)
        if (p := paused(r, f"stage 2 expert {e}")) is not None:
            return p
        phases[key] = "done"
        _save_state(out, state)

    weights = out / f"linearsr_x{cfg.model.scale}.safetensors"
    if phases.get("export") != "done":
        experts = [final_checkpoint(out / "stage2" / f"expert{e}") for e in range(n)]
        prov = {**provenance, "init_checkpoint": phases["knee"]["chosen"]}
        export_model(experts, weights, dtype=cfg.export_dtype, provenance=prov)
        if texture:
            revise_weights(weights, weights, priors={"texture": phases["texture"]["checkpoint"]},
                           dtype=cfg.export_dtype, note="the texture prior: the last checkpoint of the texture run")
        if cfg.prior and cfg.router_crops > 0:
            add_router(weights, weights, dataclasses.replace(cfg.data, crop=cfg.router_crop), cfg.router_crops,
                       dtype=cfg.export_dtype)
        phases["export"] = "done"
        _save_state(out, state)
        note(f"exported {weights} ({weights.stat().st_size / 1e6:.1f} MB, {cfg.export_dtype})")
    return RecipeStatus(True, phases, weights, f"recipe complete: {weights}")
