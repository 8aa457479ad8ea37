"""The top-level ``reslab`` command and package: lazy imports, one parser per sub-command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reslab.cli import ALL, COMMANDS, build_parser, command_in, main


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (so that nothing is imported yet); its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return done.stdout.strip()


def test_help_and_version_do_not_import_torch() -> None:
    out = _python(
        "import sys\n"
        "from reslab.cli import main\n"
        "for argv in (['--version'], ['--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "import reslab\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    lines = out.splitlines()
    assert lines[0].startswith("reslab ")  # --version
    for name in COMMANDS:  # --help lists every command
        assert any(line.split()[:1] == [name] for line in lines), name
    assert lines[-1] == "[]"


def test_api_names_load_on_first_use_and_train_stays_the_function() -> None:
    out = _python(
        "import sys, reslab\n"
        "print('torch' in sys.modules)\n"
        "import reslab.train.config  # binds the package reslab.train, which must not win\n"
        "from reslab.train.engine import train\n"
        "print(reslab.train is train, callable(reslab.train))\n"
        "print(type(reslab.create_model('resnet20')).__name__)\n"
        "from reslab import TrainConfig, load, evaluate, Predictor, ReslabError\n"
        "print(set(reslab.__all__) <= set(dir(reslab)), '__file__' in dir(reslab))\n"
        "print(reslab.data.TensorLoader.__name__, reslab.models.fuse.__name__)\n"
    )
    assert out.splitlines() == ["False", "True True", "ResNet", "True True",
                                "TensorLoader reslab.models.fuse"]


def test_the_api_list_is_one_list():
    import reslab

    assert set(reslab.__all__) == set(reslab._API) | {"__version__"}
    for name in reslab.__all__:
        assert getattr(reslab, name) is not None, name
    for name in reslab._SUBMODULES:
        assert getattr(reslab, name).__name__ == f"reslab.{name}"


def test_unknown_api_name_is_an_attribute_error() -> None:
    import reslab

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        reslab.nope  # noqa: B018


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_alone_gets_the_same_parser_as_with_all(name: str) -> None:
    def sub_help(parser) -> str:
        (action,) = [a for a in parser._actions if a.dest == "command"]
        return action.choices[name].format_help()

    alone = sub_help(build_parser(name))
    assert alone == sub_help(build_parser(ALL))
    assert len(alone.splitlines()) > 4  # a description and arguments, not the bare stub


def test_command_in() -> None:
    assert command_in(["--version"]) is None
    assert command_in(["train", "--model", "resnet20"]) == "train"
    assert command_in(["models", "-h"]) == "models"
    assert command_in(["-h", "models"]) is None  # the top-level help: no command to load
    assert command_in(["--version", "train"]) is None
    assert command_in(["--vers", "train"]) is None  # argparse's abbreviation of --version
    assert command_in(["bogus", "train"]) is None


def test_unknown_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("reslab: error: argument COMMAND: invalid choice: 'bogus'")
    assert len(err.splitlines()) == 1
