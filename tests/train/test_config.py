"""Configuration: paper defaults, presets, TOML and flags, strict types."""

import argparse

import pytest

from reslab.commands.train import add_config_flags, config_overrides
from reslab.errors import ReslabError
from reslab.train.config import PRESETS, TrainConfig, coerce, read_toml, resolve


def test_defaults_are_the_cifar_recipe():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert (cfg.iters, cfg.milestones, cfg.lr_decay) == (64000, [32000, 48000], 0.1)
    assert (cfg.train_split, cfg.val_split, cfg.pad, cfg.flip) == ("train45k", "val5k", 4, True)


def test_preset_chosen_by_data_set():
    assert resolve({"data": "cifar10"}).preset == "cifar-paper"
    imagenet = resolve({"data": "imagenet"})
    assert (imagenet.preset, imagenet.batch_size, imagenet.schedule) == ("imagenet-paper", 256, "plateau")
    assert imagenet.iters == 600_000
    fmnist = resolve({"data": "fashion-mnist"})
    assert (fmnist.train_split, fmnist.val_split, fmnist.flip) == ("train55k", "val5k", True)
    mnist = resolve({"data": "mnist"})  # digits are not flipped
    assert (mnist.preset, mnist.train_split, mnist.flip) == ("mnist", "train55k", False)
    assert resolve({"data": "mnist", "flip": "true"}).flip is True
    assert set(PRESETS) >= {"cifar-paper", "imagenet-paper", "imagenet-epochs", "fashion-mnist",
                            "mnist"}


def test_shortened_run_scales_milestones():
    assert resolve({"iters": "6400"}).milestones == [3200, 4800]
    cfg = resolve({"data": "fashion-mnist", "epochs": "4"})
    assert cfg.milestones == [2.0, 3.0]  # in epochs: half and three quarters of the run
    cfg = resolve({"preset": "imagenet-epochs", "data": "imagenet", "iters": 900})
    assert cfg.epochs is None and cfg.milestones == pytest.approx([300, 600])
    assert resolve({"iters": 100, "milestones": "10,20"}).milestones == [10, 20]


def test_precedence_preset_then_toml_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nmodel = "resnet56"\nlr = 0.05\nmilestones = [10, 20]\n')
    cfg = resolve({"lr": "0.02"}, config_file=path)
    assert (cfg.model, cfg.lr, cfg.milestones) == ("resnet56", 0.02, [10, 20])


@pytest.mark.parametrize(
    ("toml", "flags", "iters", "epochs", "milestones"),
    [
        # --epochs over a file's iterations: epochs count (iters is unused), the file's
        # milestones move with them
        ("iters = 6400\nmilestones = [3200, 4800]\n", {"epochs": "5"}, 6400, 5, [2.5, 3.75]),
        # --iters over a file's epochs: the epochs are gone
        ("epochs = 10\nmilestones = [5, 7.5]\n", {"iters": "1000"}, 1000, None, [500, 750]),
        ("iters = 6400\nmilestones = [3200, 4800]\n", {"iters": "640"}, 640, None, [320, 480]),
        ("epochs = 10\nmilestones = [5, 7.5]\n", {"epochs": "20"}, 64000, 20, [10, 15]),
        # a file's length without milestones moved the preset's; the flag moves those again
        ("iters = 6400\n", {"epochs": "4"}, 6400, 4, [2, 3]),
        # milestones given with the flag are taken as they are
        ("iters = 6400\nmilestones = [3200, 4800]\n", {"epochs": "5", "milestones": "1,4"},
         6400, 5, [1, 4]),
    ],
)
def test_a_length_flag_replaces_the_files_and_moves_its_milestones(
        tmp_path, toml, flags, iters, epochs, milestones):
    path = tmp_path / "run.toml"
    path.write_text(toml)
    cfg = resolve(flags, config_file=path)
    assert (cfg.iters, cfg.epochs) == (iters, epochs)
    assert cfg.milestones == pytest.approx(milestones)


def test_a_length_flag_over_a_saved_run_config(tmp_path):
    """``--config runs/NAME/config.toml`` holds every key (epochs as "none"); a shorter run in
    epochs gets the saved run's schedule, its warm-up ramp included, in epochs."""
    from reslab.train.rundir import dump_toml

    path = tmp_path / "config.toml"
    path.write_text(dump_toml(resolve({"iters": "6400", "lr_ramp": "640"}).to_dict()))
    cfg = resolve({"epochs": "10"}, config_file=path)
    assert (cfg.epochs, cfg.milestones, cfg.lr_ramp) == (10, [5, 7.5], 1)
    back = resolve({"iters": "64000"}, config_file=path)
    assert (back.epochs, back.milestones, back.lr_ramp) == (None, [32000, 48000], 6400)


def test_config_folder_is_one_line(tmp_path, capsys):
    from reslab.cli import main

    assert main(["train", "--config", f"{tmp_path}/"]) == 2
    assert capsys.readouterr().err == (f"reslab: error: config file {tmp_path} is a folder; give "
                                       f"a .toml file, e.g. {tmp_path}/config.toml of a run "
                                       "folder\n")


def test_iters_and_epochs_together_are_refused_on_the_command_line(tmp_path, capsys):
    from reslab.cli import main

    path = tmp_path / "run.toml"
    path.write_text("iters = 6400\n")
    assert main(["train", "--config", str(path), "--iters", "100", "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (
        "reslab: error: iters and epochs both set the run's length; give one of them "
        "(--iters N or --epochs E)\n")
    with pytest.raises(ReslabError, match="iters and epochs both set the run's length"):
        resolve({"iters": "100", "epochs": "none"})


def test_python_api_layers_overrides_on_a_base_config_like_flags_on_a_file(monkeypatch, tmp_path):
    """``reslab.train(config, **overrides)``: the config is the base, as a --config file is."""
    import reslab
    from reslab.train import engine

    trained = []

    class Recorder:
        def __init__(self, config, **_):
            trained.append(config)

        def run(self, stop_after=None):
            return None

    monkeypatch.setattr(engine, "Trainer", Recorder)
    base = resolve({"iters": "6400", "device": "cpu"})
    reslab.train(base, epochs=5)
    reslab.train(base.to_dict(), iters=640)
    path = tmp_path / "base.toml"
    path.write_text('iters = 6400\ndevice = "cpu"\n')
    assert trained == [resolve({"epochs": "5"}, config_file=path),
                       resolve({"iters": "640"}, config_file=path)]
    assert (trained[0].epochs, trained[0].milestones) == (5, [2.5, 3.75])
    assert (trained[1].epochs, trained[1].milestones) == (None, [320, 480])
    with pytest.raises(ReslabError, match="iters and epochs both set the run's length"):
        reslab.train(base, iters=100, epochs=2)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lr", "abc", "config key 'lr' must be a finite float, got 'abc'"),
        ("batch_size", "1.5", "must be int"),
        ("batch_size", 2.0, "must be int"),
        ("amp", "maybe", "must be bool"),
        ("model", 3, "must be str"),
        ("lrr", "1", "unknown config key 'lrr'"),
        ("milestones", "a,b", "must be a list of finite floats"),
        ("lr", "nan", "config key 'lr' must be a finite float, got 'nan'"),
        ("lr", float("inf"), "must be a finite float"),
        ("milestones", "1,inf", "must be a list of finite floats"),
    ],
)
def test_wrong_types_and_keys(key, value, message):
    with pytest.raises(ReslabError, match=message):
        coerce(key, value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": "0"}, "lr must be positive"),
        ({"lr": "-0.1"}, "lr must be positive"),
        ({"batch_size": "0"}, "batch_size must be positive"),
        ({"schedule": "exponential"}, "unknown schedule 'exponential'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"weight_decay": "-1"}, "weight_decay must not be negative"),
        ({"milestones": "-5"}, r"milestones must not be negative, got \[-5.0\]"),
        ({"seed": str(2**70)}, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": "-1"}, r"seed must be in \[0, 2\*\*63\)"),
        ({"label_smoothing": "1.5"}, r"label_smoothing must be in \[0, 1\)"),
        ({"erase": "1.5"}, r"erase must be a probability in \[0, 1\], got 1.5"),
        ({"erase": "0.5", "augment": "false"}, "erase is part of the training augmentation"),
        ({"momentum": "0", "nesterov": "true"}, "nesterov needs a momentum above 0"),
        ({"momentum": "2"}, r"momentum must be in \[0, 1\), got 2.0"),
        ({"momentum": "1"}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"momentum": "-0.1"}, r"momentum must be in \[0, 1\), got -0.1"),
        ({"milestones": "48000,32000"},
         r"milestones must increase, each given once, got \[48000.0, 32000.0\]"),
        ({"milestones": "32000,32000"}, "milestones must increase, each given once"),
        ({"schedule": "plateau", "milestones": "2,1"}, "milestones must increase"),
        ({"milestones": "32000,64000"},
         r"milestones must be inside the run \(64000 iterations\), got \[32000.0, 64000.0\]"),
        ({"epochs": "5", "milestones": "32000,48000"},
         r"milestones must be inside the run \(5 epochs\)"),
        ({"train_split": "train"},  # the CIFAR preset's val5k, now inside the training images
         "--val-split val5k is part of --train-split train, so the run would be judged on "
         "images it trains on; train on train45k to keep val5k out, or give --val-split none"),
        ({"data": "fashion-mnist", "train_split": "train", "val_split": "none",
          "test_split": "val5k"}, "--test-split val5k is part of --train-split train.*train55k"),
        # options the model does not take: refused by resolve, before any data is read
        ({"shortcut": "Z"}, "unknown shortcut option 'Z'; choose from: A, B, C"),
        ({"variant": "v1.5"}, "model 'resnet20' has no option 'variant'"),
        ({"model": "resnet50", "variant": "v9"}, "unknown variant 'v9'"),
        ({"model": "vgg16", "shortcut": "A"}, "model 'vgg16' has no option 'shortcut'"),
    ],
)
def test_bad_values(overrides, message):
    with pytest.raises(ReslabError, match=message):
        resolve(overrides)


def test_the_full_training_split_goes_with_no_val5k():
    config = resolve({"data": "fashion-mnist", "train_split": "train", "val_split": "none"})
    assert (config.train_split, config.val_split, config.test_split) == ("train", None, "test")
    assert resolve({"data": "fashion-mnist"}).train_split == "train55k"  # the preset's 55k/5k


def test_milestones_past_the_end_only_matter_to_the_step_schedule():
    assert resolve({"schedule": "plateau", "iters": "100", "milestones": "50,200"}).milestones == [
        50, 200]
    assert resolve({"momentum": "0"}).momentum == 0


def test_toml_errors(tmp_path):
    with pytest.raises(ReslabError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
    with pytest.raises(ReslabError, match=f"config file {tmp_path} is a folder; give a .toml "
                                          f"file, e.g. {tmp_path}/config.toml of a run folder"):
        read_toml(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(ReslabError, match="not valid TOML"):
        read_toml(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rate = 0.1")
    with pytest.raises(ReslabError, match="unknown config key 'learning_rate'"):
        read_toml(unknown)
    none = tmp_path / "none.toml"
    none.write_text('val_split = "none"\n')
    assert read_toml(none) == {"val_split": None}
    not_a_table = tmp_path / "table.toml"
    not_a_table.write_text("train = 5\n")
    with pytest.raises(ReslabError, match=r"\[train\] must be a table"):
        read_toml(not_a_table)
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('model = "resnet56"\nbogus = 1\n[train]\nlr = 0.2\n')
    with pytest.raises(ReslabError, match=r"keys outside the \[train\] table \(bogus, model\)"):
        read_toml(mixed)
    table = tmp_path / "train.toml"
    table.write_text('[train]\nmodel = "resnet56"\nlr = 0.2\n')
    assert read_toml(table) == {"model": "resnet56", "lr": 0.2}


def test_resolved_config_round_trips_through_toml(tmp_path):
    from reslab.train.rundir import dump_toml

    cfg = resolve({"val_split": "none", "data": "fashion-mnist", "iters": 10})
    path = tmp_path / "config.toml"
    path.write_text(dump_toml(cfg.to_dict()))
    assert resolve({}, config_file=path) == cfg  # a resume keeps val_split = None


@pytest.mark.parametrize("argv, expected", [
    ([], None),  # not given: the config's default (0, off) stays
    (["--monitor"], "100"),  # alone: the default interval
    (["--monitor", "25"], "25"),
])
def test_monitor_flag_takes_an_optional_interval(argv, expected):
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append")
    add_config_flags(parser)
    overrides = config_overrides(parser.parse_args([*argv, "--lr", "0.05"]))
    assert overrides.get("monitor") == expected
    config = resolve(overrides)
    assert config.monitor == (0 if expected is None else int(expected))
