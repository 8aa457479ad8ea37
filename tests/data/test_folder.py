"""Class-per-folder trees and the ImageNet layouts: exact labels and pixels, and bad input."""

import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reslab
from reslab.data import get_dataset, verify
from reslab.data.folder import decode_file
from reslab.errors import ReslabError
from tests.data.formats import random_images, write_image

WNIDS = ["n01440764", "n01443537", "n09999999"]


def smooth_images(n: int) -> torch.Tensor:
    """uint8 [n, 3, 24, 32] gradients (JPEG keeps them almost exactly)."""
    y, x = torch.linspace(0, 1, 24)[:, None], torch.linspace(0, 1, 32)[None, :]
    return torch.stack([
        torch.stack([x * 200 + 5 * i + 0 * y, y * 150 + 50 + 0 * x, (x + y) * 60 + 10 * i])
        for i in range(n)
    ]).round().to(torch.uint8)  # fmt: skip


@pytest.fixture
def tree(tmp_path):
    """folder/train/<class>/*.png (exact pixels) and folder/val/ with two of the classes."""
    images = random_images(6, (3, 10, 12), seed=3)
    classes = ["cat", "dog", "emu"]
    for i, image in enumerate(images):
        write_image(tmp_path / "train" / classes[i % 3] / f"{i}.png", image)
    write_image(tmp_path / "val" / "emu" / "a.png", images[0])
    write_image(tmp_path / "val" / "cat" / "b.png", images[1])
    return tmp_path, images, classes


def test_folder_tree_reads_back_exact_pixels_and_labels(tree):
    root, images, classes = tree
    train = get_dataset("folder", root, "train")
    assert train.classes == classes and len(train) == 6
    by_name = {Path(p).name: (index, label) for index, (p, label) in enumerate(train.samples)}
    for i, image in enumerate(images):
        index, label = by_name[f"{i}.png"]
        got, got_label = train[index]
        assert torch.equal(got, image) and got_label == label == i % 3
    val = get_dataset("folder", root, "val")  # labels follow train/'s class order
    assert val.classes == classes
    assert [label for _, label in val.samples] == [0, 2]  # cat/b.png, emu/a.png
    assert torch.equal(val[1][0], images[0])


@pytest.mark.parametrize(("suffix", "fmt", "mode"), [
    (".bmp", "BMP", "RGB"), (".tif", "TIFF", "RGB"), (".tiff", "TIFF", "I;16"),
    (".ppm", "PPM", "RGB"), (".pgm", "PPM", "L"), (".pnm", "PPM", "RGB"),
])  # fmt: skip
def test_every_format_of_torchvisions_image_folder_is_read(tmp_path, suffix, fmt, mode):
    """BMP, TIFF (16-bit grey too: its high byte, as predict reads it) and PPM/PGM trees, which
    torchvision's ImageFolder reads, decode to Pillow's pixels; a file cut short names itself."""
    pixels = random_images(2, (3, 9, 11), seed=5)
    folder = tmp_path / "train" / "c"
    folder.mkdir(parents=True)
    expected = []
    for i, image in enumerate(pixels):
        picture = Image.fromarray(image.permute(1, 2, 0).numpy())
        if mode == "I;16":  # value * 257 + i: the high byte is the 8-bit value
            picture = Image.fromarray(image[0].numpy().astype("<u2") * 257 + i)  # mode I;16
            expected.append(image[:1].expand(3, -1, -1))
        elif mode == "L":
            picture = picture.convert("L")
            expected.append(torch.from_numpy(np.array(picture))[None].expand(3, -1, -1))
        else:
            expected.append(image)
        picture.save(folder / f"{i}{suffix}", format=fmt)
    train = get_dataset("folder", tmp_path, "train")
    assert len(train.samples) == 2 and not train.skipped
    for i in range(2):
        assert torch.equal(train[i][0], expected[i])
    path = folder / f"0{suffix}"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ReslabError, match=rf"0\{suffix}: cannot decode image"):
        verify("folder", tmp_path)


def test_linked_folders_are_followed_but_a_link_loop_is_not(tree, tmp_path_factory):
    root, images, _ = tree
    extra = tmp_path_factory.mktemp("extra")
    write_image(extra / "linked.png", images[2])
    (root / "train" / "dog" / "more").symlink_to(extra, target_is_directory=True)
    (root / "train" / "cat" / "loop").symlink_to(root / "train" / "cat", target_is_directory=True)
    (extra / "up").symlink_to(root / "train", target_is_directory=True)  # a loop via the link
    train = get_dataset("folder", root, "train")
    names = sorted(Path(p).relative_to(root / "train").as_posix() for p, _ in train.samples)
    assert names == ["cat/0.png", "cat/3.png", "dog/1.png", "dog/4.png", "dog/more/linked.png",
                     "emu/2.png", "emu/5.png"]


def test_non_images_are_skipped_counted_and_warned(tree, caplog):
    root, _, _ = tree
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"GIF89a not a jpeg")
    (root / "train" / "README").write_text("top-level file")
    with caplog.at_level(logging.WARNING, logger="reslab.data.folder"):
        train = get_dataset("folder", root, "train")
    assert len(train) == 6 and len(train.skipped) == 3
    assert "skipped 3 file(s)" in caplog.text


def test_damaged_image_body_names_the_file(tree):
    root, _, _ = tree
    (root / "train" / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    train = get_dataset("folder", root, "train")
    index = next(i for i, (path, _) in enumerate(train.samples) if path.endswith("/0.png"))
    with pytest.raises(ReslabError, match=r"0.png: cannot decode image"):
        train[index]
    with pytest.raises(ReslabError, match=r"0.png: cannot decode image"):
        verify("folder", root)


def damage_png_pixel_data(path: Path) -> None:
    """Flip a bit of the zlib checksum that ends a PNG's IDAT data and re-seal the chunk's CRC,
    so the file is a well-formed PNG whose pixel data does not check out (bit rot inside the
    compressed stream, or a copy that lost part of it)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[start : start + 4])
    body = start + 8
    data[body + length - 1] ^= 1  # the Adler-32's last byte
    data[body + length : body + length + 4] = struct.pack(
        ">I", zlib.crc32(bytes(data[start + 4 : body + length])))
    path.write_bytes(bytes(data))


def test_png_with_damaged_pixel_data_is_one_error_not_a_crash(tree):
    """torchvision's PNG decoder (0.29) ends the process with a segmentation fault on such a
    file: `reslab data verify`, which exists to find damaged files, died with it, and so did
    training. Run in a fresh interpreter, so a crash fails this test instead of the suite."""
    root, images, _ = tree
    damage_png_pixel_data(root / "train" / "cat" / "0.png")
    src = str(Path(reslab.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "reslab", "data", "verify", "folder", "--data-dir", str(root)],
        capture_output=True, text=True, timeout=120, env={"PYTHONPATH": src, "PATH": ""})
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    assert done.stderr.startswith(f"reslab: error: {root}/train/cat/0.png: cannot decode image ")
    assert len(done.stderr.splitlines()) == 1
    with pytest.raises(ReslabError, match=r"0.png: cannot decode image"):
        decode_file(root / "train" / "cat" / "0.png")
    assert torch.equal(decode_file(root / "train" / "dog" / "1.png"), images[1])  # PNGs still read


def test_image_file_emptied_after_the_scan_names_the_file(tree):
    """An empty file is skipped by the scan; one emptied later (a copy or sync still running)
    was a bare ValueError from torch.frombuffer."""
    root, _, _ = tree
    train = get_dataset("folder", root, "train")
    index = next(i for i, (path, _) in enumerate(train.samples) if path.endswith("/0.png"))
    Path(train.samples[index][0]).write_bytes(b"")
    with pytest.raises(ReslabError, match=r"0.png: cannot decode image"):
        train[index]


def test_image_over_the_pixel_limit_is_refused_before_decoding(tree, monkeypatch):
    """A decompression bomb (a small file of huge dimensions) is refused from its header, at
    Pillow's limit (which `reslab predict` obeys too), in one line naming the file."""
    root, _, _ = tree
    train = get_dataset("folder", root, "train")  # 10x12 images
    index = next(i for i, (path, _) in enumerate(train.samples) if path.endswith("/0.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ReslabError, match=r"0.png: image of 12x10 pixels is over the limit of "
                                          r"100 \(PIL.Image.MAX_IMAGE_PIXELS"):
        train[index]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # twice over: Pillow's own error
    with pytest.raises(ReslabError, match=r"0.png: Image size \(120 pixels\) exceeds limit"):
        train[index]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 120)
    assert train[index][0].shape == (3, 10, 12)


def test_empty_class_folder(tree):
    root, _, _ = tree
    (root / "train" / "fox").mkdir()
    (root / "train" / "fox" / "x.txt").write_text("no images")
    with pytest.raises(ReslabError, match=r"train/fox: empty class folder"):
        get_dataset("folder", root, "train")


def test_unknown_val_class_and_missing_split(tree):
    root, images, _ = tree
    write_image(root / "val" / "yak" / "c.png", images[2])
    with pytest.raises(ReslabError, match=r"val/yak: class 'yak' is not a training class"):
        get_dataset("folder", root, "val")
    with pytest.raises(ReslabError, match=r"test does not exist"):
        get_dataset("folder", root, "test")


def test_missing_root(tmp_path):
    with pytest.raises(ReslabError, match=r"data dir .*absent does not exist"):
        get_dataset("folder", tmp_path / "absent", "train")


@pytest.fixture
def imagenet(tmp_path):
    """imagenet/train/<wnid>/*.JPEG (2 per class) and a flat val/ with LOC_val_solution.csv."""
    base = tmp_path / "imagenet"
    images = smooth_images(9)
    for i, image in enumerate(images[:6]):
        write_image(base / "train" / WNIDS[i % 3] / f"{WNIDS[i % 3]}_{i}.JPEG", image)
    rows = ["ImageId,PredictionString"]
    for i, image in enumerate(images[6:], start=1):
        write_image(base / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", image)
        wnid = WNIDS[(i + 1) % 3]
        rows.append(f"ILSVRC2012_val_{i:08d},{wnid} 1 2 30 20 {wnid} 3 4 10 10")
    (base / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return tmp_path, images


def test_imagenet_train_and_flat_val(imagenet):
    root, images = imagenet
    train = get_dataset("imagenet", root, "train")
    assert train.classes == WNIDS and train.targets == [0, 0, 1, 1, 2, 2]
    val = get_dataset("imagenet", root, "val")
    assert val.classes == WNIDS and val.targets == [2, 0, 1]
    for i, (path, _) in enumerate(val.samples):
        decoded = val[i][0]
        reference = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)
        assert decoded.shape == (3, 24, 32)
        assert (decoded.int() - reference.int()).abs().max() <= 2  # same JPEG, two decoders
        assert (decoded.float() - images[6 + i].float()).abs().mean() < 3  # quality 95


def test_flat_val_ignores_hidden_folders_and_a_byte_order_mark(imagenet):
    """A notebook's .ipynb_checkpoints/ does not make val/ a class-per-folder tree, and a CSV
    saved with a UTF-8 BOM (Excel does) reads as the same header."""
    root, _ = imagenet
    (root / "imagenet" / "val" / ".ipynb_checkpoints").mkdir()
    csv = root / "imagenet" / "LOC_val_solution.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    assert get_dataset("imagenet", root, "val").targets == [2, 0, 1]


def test_flat_val_csv_that_is_not_text(imagenet):
    root, _ = imagenet
    (root / "imagenet" / "LOC_val_solution.csv").write_bytes(b"\xff\xfeI\x00d\x00")
    with pytest.raises(ReslabError, match=r"LOC_val_solution.csv: not UTF-8 text"):
        get_dataset("imagenet", root, "val")


def test_imagenet_val_sorted_into_wnid_folders(imagenet):
    root, images = imagenet
    val = root / "imagenet" / "val"
    for path in list(val.iterdir()):
        path.unlink()
    write_image(val / WNIDS[1] / "x.JPEG", images[7])
    dataset = get_dataset("imagenet", root, "val")
    assert dataset.targets == [1] and dataset.classes == WNIDS


def test_imagenet_verify_compares_with_the_official_counts(imagenet):
    root, _ = imagenet
    with pytest.raises(ReslabError, match=r"train has 6 images, the official imagenet has 1281167"):
        verify("imagenet", root)


HEADER = "ImageId,PredictionString\n"


@pytest.mark.parametrize(("csv", "message"), [
    (None, r"ground truth is missing: put LOC_val_solution.csv or ILSVRC2012_devkit_t12"),
    ("id,label\n", r"LOC_val_solution.csv: first line must be"),
    (HEADER + "ILSVRC2012_val_00000001,\n", r"LOC_val_solution.csv:2: no wnid"),
    (HEADER, r"ILSVRC2012_val_00000001.JPEG: no ground truth"),
    (HEADER + "ILSVRC2012_val_00000001,n07777777 1 2 3 4\n", r"n07777777, not a training class"),
])  # fmt: skip
def test_flat_val_ground_truth_errors(imagenet, csv, message):
    root, _ = imagenet
    path = root / "imagenet" / "LOC_val_solution.csv"
    if csv is None:
        path.unlink()
    else:
        path.write_text(csv)
    with pytest.raises(ReslabError, match=message):
        get_dataset("imagenet", root, "val")


def test_class_folders_must_be_wnids(imagenet):
    root, _ = imagenet
    (root / "imagenet" / "train" / "cats").mkdir()
    with pytest.raises(ReslabError, match=r"train/cats: not a WordNet id folder"):
        get_dataset("imagenet", root, "val")


def test_no_imagenet(tmp_path):
    with pytest.raises(ReslabError, match=r"no ImageNet under"):
        get_dataset("imagenet", tmp_path, "train")
