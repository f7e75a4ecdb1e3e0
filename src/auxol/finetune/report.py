"""The training curve picture of a fine-tuning or pre-training run."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from auxol.io import atomic_open  # noqa: E402


def plot_curve(log: list[dict], path: str | os.PathLike, loss_name: str = "Dice + CE loss") -> None:
    """Write a PNG of the training loss (left axis) and, where the log has any, validation Dice (right axis) against the step."""
    figure, loss_axis = plt.subplots(figsize=(7, 4))
    loss_axis.plot([row["step"] for row in log], [row["loss"] for row in log], color="tab:blue", label="loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel(loss_name, color="tab:blue")
    validated = [row for row in log if row.get("val_dice", "") != ""]
    if validated:
        dice_axis = loss_axis.twinx()
        dice_axis.plot([row["step"] for row in validated], [row["val_dice"] for row in validated], "o-", color="tab:orange")
        dice_axis.set_ylabel("validation Dice", color="tab:orange")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
