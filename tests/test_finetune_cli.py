"""``auxol finetune`` / ``split`` / ``pretrain`` from the command line: options, errors and outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from auxol.commands.finetune import finetune, pretrain, split
from auxol.errors import ConfigError, WeightsError
from test_finetune_tiny import tiny_model, write_squares

app = typer.Typer()
app.command("finetune")(finetune)
app.command("split")(split)
app.command("pretrain")(pretrain)


def _invoke(*arguments: str):
    return CliRunner().invoke(app, [str(a) for a in arguments])


def test_split_writes_the_first_n_pairs_and_the_rest(tmp_path):
    write_squares(tmp_path / "data", 5)
    result = _invoke("split", tmp_path / "data", "--out", tmp_path / "lists", "--first", 3)
    assert result.exit_code == 0, result.output
    train = (tmp_path / "lists" / "train.csv").read_text().splitlines()
    test = (tmp_path / "lists" / "test.csv").read_text().splitlines()
    assert train[0] == "image_path,mask_path" and len(train) == 4 and len(test) == 3
    assert train[1].endswith("masks/case00.png") and test[1].startswith(str(tmp_path / "data" / "images" / "case03.png"))


def test_distributed_flag_without_torchrun_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = _invoke("finetune", "--train", tmp_path, "--val", tmp_path, "--out", tmp_path / "o", "--distributed")
    assert isinstance(result.exception, ConfigError) and "torchrun" in str(result.exception)


def test_checkpoint_of_another_architecture_is_a_weights_error(tmp_path):
    torch.save(tiny_model().state_dict(), tmp_path / "tiny.pth")
    result = _invoke("finetune", "--train", tmp_path, "--val", tmp_path, "--out", tmp_path / "o", "--checkpoint", tmp_path / "tiny.pth")
    assert isinstance(result.exception, WeightsError) and "not a litemedsam checkpoint" in str(result.exception)


def test_config_file_values_are_used_and_command_line_overrides_them(tmp_path, monkeypatch):
    captured = {}
    monkeypatch.setattr("auxol.finetune.trainer.run_finetune", lambda config: captured.update(config=config))  # returns None
    (tmp_path / "c.json").write_text(json.dumps({"train": "t.csv", "val": "v.csv", "out": "o", "lr": 1e-4, "augment": False, "blocks": [0, 2]}))
    result = _invoke("finetune", "--config", tmp_path / "c.json", "--lr", "2e-4", "--no-augment", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert (config.train, config.lr, config.augment, config.blocks, config.batch_size, config.weight_decay) == ("t.csv", 2e-4, False, (0, 2), 2, 0.1)


@pytest.mark.slow
def test_litemedsam_lora_run_writes_everything_and_merged_weights_score_the_same_in_evaluate(tmp_path):
    from auxol.evaluate.evaluation import EvaluationConfig, evaluate
    from auxol.models import load_model

    write_squares(tmp_path / "data", 3, size=96)
    out = tmp_path / "run"
    result = _invoke("finetune", "--train", tmp_path / "data", "--val", tmp_path / "data", "--out", out, "--max-steps", 2,
                     "--batch-size", 1, "--warmup-steps", 1, "--no-augment")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"config.json", "log.csv", "curve.png", "state.pt", "peft", "merged.pth", "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_parameters"] == 811184 and summary["best"]["step"] == 2
    model = load_model("litemedsam", out / "merged.pth", "cpu")
    scored = evaluate(model, EvaluationConfig(data=str(tmp_path / "data"), out=str(tmp_path / "eval"), model="litemedsam", checkpoint=str(out / "merged.pth")))
    assert scored["overall"]["dice"] == pytest.approx(summary["final_evaluation"]["dice"], abs=1e-6)
    assert np.isfinite(summary["final_evaluation"]["hd95"])


@pytest.mark.slow
def test_pretrain_output_is_accepted_as_finetune_starting_weights(tmp_path):
    from auxol.models import load_model

    write_squares(tmp_path / "data", 2, size=64)
    result = _invoke("pretrain", "--images", tmp_path / "data" / "images", "--out", tmp_path / "ssl", "--max-steps", 1, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    before = load_model("litemedsam", device="cpu").image_encoder.patch_embed.seq[0].c.weight
    after = load_model("litemedsam", tmp_path / "ssl" / "pretrained.pth", "cpu").image_encoder.patch_embed.seq[0].c.weight
    assert not torch.equal(before, after)


def test_adapter_run_folder_is_a_checkpoint_and_predicts_as_the_trained_model(tmp_path):
    from auxol.finetune.merge import save_peft
    from auxol.finetune.config import MethodConfig
    from auxol.finetune.peft_setup import prepare
    from auxol.loading import load_model
    from auxol.prompts import Prompt

    method = MethodConfig("adapter", "encoder,decoder")
    trained = load_model("litemedsam", device="cpu")
    prepare(trained, method)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in trained.named_parameters():
            if ".adapter." in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)  # stands in for training
    save_peft(trained, tmp_path / "run" / "peft", method, base_checkpoint=None)
    image = np.zeros((96, 96, 3), np.uint8)
    image[30:70, 20:60] = 200
    box = Prompt(box=(18, 28, 62, 72))
    expected = trained.eval().segment(trained.embed(image), box)
    loaded = load_model("litemedsam", tmp_path / "run", "cpu")
    assert np.array_equal(loaded.segment(loaded.embed(image), box), expected)
    plain = load_model("litemedsam", device="cpu")
    assert not np.array_equal(plain.segment(plain.embed(image), box), expected)  # the adapters matter
    with pytest.raises(ConfigError, match="pass --model litemedsam"):
        load_model("mobilesam", tmp_path / "run", "cpu")
    with pytest.raises(WeightsError, match="not an 'auxol finetune' output"):
        load_model("litemedsam", tmp_path, "cpu")
