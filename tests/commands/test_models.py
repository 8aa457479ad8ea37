"""``reslab models``: the listing, the catalogue (docs/MODELS.md) and its atomic output."""

from pathlib import Path

import pytest

from reslab.cli import main
from reslab.models import create_model
from reslab.commands.models import catalogue, classic_section

DOCS = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"


def test_listing_by_family(capsys):
    assert main(["models", "--family", "classic"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines[2:]]
    assert names == ["alexnet", "googlenet", "lenet5", "vgg16", "vgg19", "zfnet"]
    vgg = next(line for line in lines if line.startswith("vgg16"))
    assert "138,357,544" in vgg and "15.5G" in vgg and "3x224x224" in vgg


def test_pattern_and_output_file(tmp_path, capsys):
    target = tmp_path / "models.txt"
    assert main(["models", "*20", "--output", str(target)]) == 0
    assert not capsys.readouterr().out
    lines = target.read_text().splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["plain20", "resnet20"]
    assert "269,722" in lines[-1] and "40.6M" in lines[-1]
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    assert main(["models", "-o", str(tmp_path / "missing" / "m.txt")]) == 2
    assert capsys.readouterr().err == (f"reslab: error: cannot write {tmp_path}/missing/m.txt: "
                                       f"folder {tmp_path}/missing does not exist\n")


def test_no_match_is_an_error(capsys):
    assert main(["models", "resnet21x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reslab: error: no model matches 'resnet21x'") and "choose from" in err
    assert main(["models", "resnet21"]) == 2  # a CIFAR name of a depth that is not 6n+2
    assert "6n+2" in capsys.readouterr().err
    assert main(["models", "resnet50", "--family", "cifar"]) == 2  # ImageNet's, not a depth
    assert "no model matches 'resnet50'" in capsys.readouterr().err


def test_any_cifar_depth_is_listed_by_name(capsys):
    assert main(["models", "resnet8"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 1 and rows[0].split()[:2] == ["resnet8", "cifar"]
    params = sum(p.numel() for p in create_model("resnet8").parameters())
    assert rows[0].split()[-2] == f"{params:,}"


def test_classic_section_corrects_the_vgg16_note():
    text = classic_section(progress=False)
    assert "15,237,608 values, 61MB" in text and "96MB" in text
    assert "| `alexnet` | CNN course notes: AlexNet | 3x227x227 | 62,378,344 |" in text


@pytest.mark.slow
def test_docs_models_md_is_current():
    assert DOCS.read_text() == catalogue() + "\n", "run `make docs`"
