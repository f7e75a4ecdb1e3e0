"""``auxol stream`` (replay a dataset as a clinician-in-the-loop stream with AuxOL) and ``auxol demo``.

Options of the AuxOL learner and of the simulated clinician resolve in three layers (see
:mod:`auxol.stream.settings`): the ``--preset``, then the keys of ``--config FILE.json``,
then the flags given on the command line. Every run writes the resolved options to
``OUT/config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console

from auxol import prompts
from auxol.commands.options import (
    CheckpointOption, DeviceOption, LabelNamesOption, LabelOption, ModelOption, RuntimeOption, WindowOption, choices, given_options, parse_window,
    resolve_structure,
)
from auxol.errors import ConfigError
from auxol.data.phantoms import generate_phantoms
from auxol.loading import load_model
from auxol.models import DEFAULT_MODEL, default_checkpoint
from auxol.online import DEFAULT_PRESET, PRESETS, AuxOLConfig
from auxol.online.config import AUXOL_KEYS, BatchNormStatistics
from auxol.stream import StreamOptions, StreamRunner, StreamSettings, clinician, resolve_options
from auxol.stream.report import summary_table
from auxol.stream.settings import STREAM_KEYS
from auxol.stream.volumes import VolumePrompt, VolumeStreamRunner, VolumeStreamSettings, volume_parts
from auxol.stream.volumes import summary_table as volume_summary_table

PresetName = choices("PresetName", PRESETS)
NoiseKind = choices("NoiseKind", get_args(clinician.NoiseKind))
StreamPrompt = choices("StreamPrompt", dict.fromkeys((*get_args(prompts.PromptKind), *get_args(VolumePrompt))))
BatchNormMode = choices("BatchNormMode", get_args(BatchNormStatistics))


def _option(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel="AuxOL options (default: --config, else the preset)")


def _stream_option(help_text: str, *names: str) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel="Clinician simulation")


def stream(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A part (images/ + masks/), a tree of parts, or a CSV list.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
    preset: Annotated[PresetName, typer.Option(help="AuxOL preset the other options start from.")] = DEFAULT_PRESET,
    config: Annotated[Path | None, typer.Option("--config", help="JSON file of AuxOL and stream options (over the preset).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in OUT from its saved progress (OUT/session/), images or volumes.")] = False,
    save_every: Annotated[int, typer.Option(help="Save the learners' progress every N images (volumes: slices; also after each volume).", min=1)] = 10,
    # Clinician simulation (shown defaults: StreamOptions'; only the flags given override --config)
    prompt: Annotated[
        StreamPrompt, _stream_option("Prompt derived from each true mask; volumes: box per slice, or propagate from the seed slice.")
    ] = StreamOptions.prompt,
    min_size: Annotated[int, _stream_option("Drop mask components whose box is narrower or shorter (px).")] = StreamOptions.min_size,
    box_margin: Annotated[float, _stream_option("Widen boxes by this fraction of the image's long side (0: tight, as in the paper).")] = StreamOptions.box_margin,
    prompt_noise: Annotated[float, _stream_option("Shift each box left/right and up/down by this fraction of its size.")] = StreamOptions.prompt_noise,
    interval: Annotated[int, _stream_option("Rectify every k-th image only (1: all).")] = StreamOptions.interval,
    dice_threshold: Annotated[float, _stream_option("Rectify only images whose base Dice is <= this.")] = StreamOptions.dice_threshold,
    annotation_noise: Annotated[NoiseKind | None, _stream_option("Degrade rectified masks (default: exact masks).")] = StreamOptions.annotation_noise,
    noise_ratio: Annotated[float, _stream_option("Noise kernel side / min side of the component box.")] = StreamOptions.noise_ratio,
    # AuxOL options (None: not given; from --config, else the preset)
    width: Annotated[int | None, _option("Auxiliary U-Net width (first level channels).")] = None,
    queue_length: Annotated[int | None, _option("Online batch: most recent N rectified crops.")] = None,
    crop_size: Annotated[int | None, _option("Auxiliary input side (px, multiple of 16).")] = None,
    four_channel: Annotated[bool | None, _option("Append the base mask as a 4th input channel.", "--four-channel/--no-four-channel")] = None,
    lr: Annotated[float | None, _option("AdamW learning rate.")] = None,
    weight_decay: Annotated[float | None, _option("AdamW weight decay.")] = None,
    steps_per_image: Annotated[int | None, _option("Optimiser steps per crop of each image.")] = None,
    train_on_unrectified: Annotated[
        bool | None, _option("Train on the online batch after images nobody rectified.", "--train-on-unrectified/--no-train-on-unrectified")
    ] = None,
    predict_batchnorm: Annotated[BatchNormMode | None, _option("BatchNorm statistics when predicting.")] = None,
    bn_momentum: Annotated[float | None, _option("BatchNorm running-average momentum.")] = None,
    alpha_step: Annotated[float | None, _option("Spacing of the fusion-weight grid.")] = None,
    alpha_max: Annotated[float | None, _option("Upper end of the fusion-weight grid.")] = None,
    alpha_history: Annotated[int | None, _option("K: past best alphas averaged into the one used.")] = None,
    crop_margin: Annotated[float | None, _option("Widen each side of a box crop by this fraction of the box.")] = None,
    keep_base_outside_crop: Annotated[
        bool | None, _option("Outside the crops keep the base mask (off: the published box cut).", "--keep-base-outside-crop/--no-keep-base-outside-crop")
    ] = None,
    bf16: Annotated[bool | None, _option("Run the auxiliary network under bfloat16 autocast.", "--bf16/--no-bf16")] = None,
    channels_last: Annotated[bool | None, _option("Channels-last activations.", "--channels-last/--no-channels-last")] = None,
    click_box: Annotated[
        bool | None, _option("Turn each click into a box for the foundation model, its extent learned from the corrections (box-only models: LiteMedSAM, MedSAM).", "--click-box/--no-click-box")
    ] = None,
    click_candidates: Annotated[int | None, _option("Candidate boxes per click; the most stable mask picks one.")] = None,
    click_extent_min: Annotated[float | None, _option("Smallest default click box side, fraction of the long side from the click.")] = None,
    click_extent_max: Annotated[float | None, _option("Largest default click box side, fraction of the long side from the click.")] = None,
    click_min_objects: Annotated[int | None, _option("Corrected objects before their extents replace the default boxes.")] = None,
    click_history: Annotated[int | None, _option("Click boxes learn from the last N corrected objects.")] = None,
    click_refine: Annotated[int | None, _option("Times a click's box is re-fitted to the model's mask for it.")] = None,
    click_channel: Annotated[
        bool | None, _option("Show the auxiliary net the click (a Gaussian channel).", "--click-channel/--no-click-channel")
    ] = None,
    min_width: Annotated[float | None, _option("Keep corrected structures this many px wide in the auxiliary input (tiles; 0: off).")] = None,
    max_tiles: Annotated[int | None, _option("Most tiles per prompt for --min-width (cost bound).")] = None,
    seed: Annotated[int | None, _option("Seed of the learner and of the prompt/annotation noise.")] = None,
    deterministic: Annotated[bool | None, _option("Deterministic torch algorithms.", "--deterministic/--no-deterministic")] = None,
    # Volumes
    label: LabelOption = None,
    label_names: LabelNamesOption = None,
    window: WindowOption = None,
) -> None:
    """Replay DATA as a clinician-in-the-loop stream: base model vs AuxOL, image by image (prequential).

    DATA may hold volumes (images/ and masks/ with NIfTI files or DICOM series folders):
    each volume is then a stream of its slices from the seed slice outward.
    """
    preset_name = getattr(preset, "value", preset)
    given = given_options(ctx, AUXOL_KEYS | STREAM_KEYS)
    prompt_name = getattr(prompt, "value", prompt)
    model_name = getattr(model, "value", model)
    parts = volume_parts(data) if data.is_dir() else []
    if parts:
        if prompt_name not in get_args(VolumePrompt):
            raise ConfigError(f"--prompt {prompt_name}: volumes take box or propagate")
        given.pop("prompt", None)  # the clinician's per-slice boxes; propagation is the volume stream's own
        auxol, options = resolve_options(preset_name, config, given)
        settings = VolumeStreamSettings(
            data=str(data), model=model_name, checkpoint=_checkpoint(model_name, checkpoint), preset=preset_name,
            auxol=auxol, stream=options, save_every=save_every, prompt=prompt_name,
            label=resolve_structure(label, label_names, data, data / "masks"), label_name=label, window=parse_window(window),
        )
        _run_volumes_and_print(settings, out, resume, device, getattr(runtime, "value", runtime))
        return
    if prompt_name == "propagate":
        raise ConfigError(f"{data}: --prompt propagate follows a structure through the slices of volumes; this data holds 2-D images")
    auxol, options = resolve_options(preset_name, config, given)
    settings = StreamSettings(
        data=str(data), model=model_name, checkpoint=_checkpoint(model_name, checkpoint),
        preset=preset_name, auxol=auxol, stream=options, save_every=save_every,
    )
    _run_and_print(settings, out, resume, device, getattr(runtime, "value", runtime))


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: data/ (the phantoms) and the stream's results.")] = Path("auxol-demo"),
    n: Annotated[int, typer.Option("--n", help="Number of phantom images.", min=1)] = 60,
    device: DeviceOption = None,
    runtime: RuntimeOption = "auto",
) -> None:
    """Stream synthetic ultrasound phantoms through LiteMedSAM + AuxOL (default preset) and show the gain."""
    data = generate_phantoms(out / "data", n, kind="ultrasound", seed=0, size=256)
    settings = StreamSettings(
        data=str(data), model=DEFAULT_MODEL, checkpoint=_checkpoint(DEFAULT_MODEL, None),
        preset=DEFAULT_PRESET, auxol=AuxOLConfig.preset(DEFAULT_PRESET),
    )
    _run_and_print(settings, out, resume=False, device=device, runtime=getattr(runtime, "value", runtime))


def _checkpoint(model: str, given: Path | None) -> str | None:
    """The weights file a run uses: ``given``, else the model's default one (None when it has none)."""
    path = given or default_checkpoint(model)
    return None if path is None else str(path)


def _run_and_print(settings: StreamSettings, out: Path, resume: bool, device: str | None, runtime: str) -> None:
    console = Console()
    net = load_model(settings.model, settings.checkpoint, device, runtime)
    summary = StreamRunner(net, settings, out, console).run(resume=resume)
    console.print(summary_table(summary))
    overall = summary.overall
    console.print(
        f"AuxOL changed the mean Dice by {overall.gain:+.4f} ({overall.base_dice:.4f} -> "
        f"{overall.auxol_dice:.4f}); report in {out}: results.csv, summary.json, plots/",
        highlight=False,
    )
    console.print(
        f"Accepted as shown (Dice >= 0.90 with the correction): base {overall.base_accept_90:.0%}, AuxOL "
        f"{overall.auxol_accept_90:.0%} of the images; the correction changes {overall.base_changed_fraction:.1%} (base) "
        f"vs {overall.auxol_changed_fraction:.1%} (AuxOL) of the object's pixels",
        highlight=False,
    )
    if settings.auxol.click_box and settings.stream.prompt == "point":
        console.print(
            f"Clicks became boxes for the foundation model (--click-box): the first {settings.auxol.click_min_objects} "
            f"corrected objects' images used default boxes ({settings.auxol.click_extent_min:g} to "
            f"{settings.auxol.click_extent_max:g} of the long side per side), later ones the learned extents "
            f"(results.csv: click_extent); their masks alone score Dice {overall.fm_dice:.4f}",
            highlight=False,
        )


def _run_volumes_and_print(settings: VolumeStreamSettings, out: Path, resume: bool, device: str | None, runtime: str) -> None:
    console = Console()
    net = load_model(settings.model, settings.checkpoint, device, runtime)
    summary = VolumeStreamRunner(net, settings, out, console).run(resume=resume)
    console.print(volume_summary_table(summary))
    overall = summary["overall"]
    console.print(
        f"3-D Dice {overall['base_dice_3d']:.4f} (base) -> {overall['auxol_dice_3d']:.4f} (AuxOL); slices needing correction "
        f"(Dice < {summary['accept_dice']}) {overall['base_needing_correction']} -> {overall['auxol_needing_correction']}; "
        f"{overall['seconds_per_slice']['total']:.2f} s per slice; report in {out}: volumes.csv, results.csv, summary.json, "
        "base/ and auxol/ label volumes, plots/",
        highlight=False,
    )
