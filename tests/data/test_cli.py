"""``reslab data get|verify|show``: exit codes, one-line errors, the PNG grid."""

import dataclasses
import gzip
import hashlib
import shutil

import pytest
import torch
from PIL import Image

from reslab.cli import main
from reslab.data import idx, load_arrays, per_pixel_mean
from reslab.data.grid import preview
from tests.data.formats import make_tar, write_cifar10, write_cifar_python, write_idx_set
from tests.data.test_idx import needs_fashion


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reslab: error: ")
    return err


def test_get_from_a_mirror(tmp_path, monkeypatch, capsys):
    mirror = tmp_path / "mirror"
    write_idx_set(mirror, gz=True)
    monkeypatch.setitem(idx.RESOURCES, "mnist", tuple(
        dataclasses.replace(r, md5=hashlib.md5((mirror / r.filename).read_bytes()).hexdigest())
        for r in idx.RESOURCES["mnist"]
    ))  # fmt: skip
    argv = ["data", "get", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", mirror.as_uri()]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"mnist: {tmp_path / 'd' / 'mnist'}\n"
    assert len(list((tmp_path / "d" / "mnist").glob("*.gz"))) == 4


def test_get_with_a_bad_checksum_fails_in_one_line(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    write_idx_set(mirror, gz=True)
    argv = ["data", "get", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", mirror.as_uri()]
    assert main(argv) == 2
    assert "train-images-idx3-ubyte.gz: MD5" in _error_line(capsys)
    kept = [p.name for p in (tmp_path / "d" / "mnist").iterdir()]
    assert kept == ["train-images-idx3-ubyte.gz.bad"]


def test_get_refuses_a_mirror_that_is_not_a_url(tmp_path, capsys):
    argv = ["data", "get", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", "example.com/x"]
    assert main(argv) == 2
    assert "mirror 'example.com/x' is not a URL: it must start with https://" in _error_line(capsys)
    assert not (tmp_path / "d").exists()


def test_verify_reports_unofficial_counts(tmp_path, capsys):
    write_cifar10(tmp_path / "cifar-10-batches-bin")
    assert main(["data", "verify", "cifar10", "--data-dir", str(tmp_path)]) == 2
    assert "train has 15 images, the official cifar10 has 50000" in _error_line(capsys)


def test_verify_folder_tree(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (5, 4), "red").save(tmp_path / "train" / name / "x.png")
    assert main(["data", "verify", "folder", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: 2 images decoded, 2 classes, 0 non-image files skipped; per class: a 1, b 1" \
        in out
    assert out.endswith("ok\n")


def test_verify_reports_a_file_named_as_an_image_that_is_not_one_as_corrupt(tmp_path, capsys):
    """A .png of other bytes is a corrupt image (named, counted), not a non-image file; the
    error is the only line (no warning about the skipped files before it), and a tree whose
    non-image files verify counts in its report gets no warning about them either."""
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (5, 4), "red").save(tmp_path / "train" / name / "x.png")
    (tmp_path / "train" / "a" / "notes.txt").write_text("a non-image file: skipped")
    (tmp_path / "train" / "b" / "bad.png").write_bytes(b"not an image at all")
    (tmp_path / "train" / "b" / "cut.jpg").write_bytes(b"")
    assert main(["data", "verify", "folder", "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"reslab: error: {tmp_path}/train/b/bad.png: corrupt or unreadable image (not a JPEG, "
        f"PNG, WebP, BMP, TIFF or PPM/PGM file, despite its name); {tmp_path}/train has 2 such "
        "file(s)\n")
    (tmp_path / "train" / "b" / "bad.png").unlink()
    (tmp_path / "train" / "b" / "cut.jpg").unlink()
    assert main(["data", "verify", "folder", "--data-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "train: 2 images decoded, 2 classes, 1 non-image files skipped" in captured.out
    assert captured.err == ""


@needs_fashion
def test_a_named_data_dir_is_used_alone_and_get_copies_the_system_copy(tmp_path, capsys,
                                                                       monkeypatch):
    """Debian's Fashion-MNIST stands in for ./data only when no data dir is named; `data get`
    copies it into a named one (no network needed), and `data verify` checks every file's
    decoded content against the official release."""
    monkeypatch.delenv("RESLAB_DATA_DIR", raising=False)
    named = tmp_path / "named"
    named.mkdir()
    assert main(["data", "verify", "fashion-mnist", "--data-dir", str(named)]) == 2
    assert (f"no files in {named}/fashion-mnist or {named}; a system-wide copy is in "
            f"{idx.SYSTEM_DIRS['fashion-mnist']}: use --data-dir") in _error_line(capsys)
    assert main(["data", "get", "fashion-mnist", "--data-dir", str(named)]) == 0
    assert capsys.readouterr().out == f"fashion-mnist: {named / 'fashion-mnist'}\n"
    assert main(["data", "verify", "fashion-mnist", "--data-dir", str(named)]) == 0
    out = capsys.readouterr().out
    assert f"fashion-mnist in {named / 'fashion-mnist'}" in out
    assert ("t10k-images-idx3-ubyte.gz: decoded MD5 8181f5470baa50b63fa0f6fddb340f0a official "
            "(recompressed .gz)") in out
    assert "train: 60000 images 1x28x28; per class: T-shirt/top 6000, Trouser 6000" in out
    assert out.endswith("ok\n")
    monkeypatch.chdir(tmp_path)  # no ./data here, no data dir named: the system copy
    assert main(["data", "verify", "fashion-mnist"]) == 0
    assert f"fashion-mnist in {idx.SYSTEM_DIRS['fashion-mnist']}" in capsys.readouterr().out


@needs_fashion
def test_verify_finds_a_changed_pixel_in_a_raw_copy(tmp_path, capsys):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in (*idx.FILES["train"], *idx.FILES["test"]):
        data = gzip.decompress((idx.SYSTEM_DIRS["fashion-mnist"] / f"{name}.gz").read_bytes())
        if name == "t10k-images-idx3-ubyte":
            data = data[:5000] + bytes([data[5000] ^ 1]) + data[5001:]  # one pixel, one bit
        (folder / name).write_bytes(data)
    assert main(["data", "verify", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    assert (f"{folder}/t10k-images-idx3-ubyte: the decoded file's MD5 is ") in (
        line := _error_line(capsys))
    assert "not the official 8181f5470baa50b63fa0f6fddb340f0a" in line


@pytest.mark.parametrize("augmented", [False, True])
def test_show_writes_a_labelled_grid(tmp_path, capsys, augmented):
    write_idx_set(tmp_path / "fashion-mnist", train=12, gz=False)
    out = tmp_path / "grid.png"
    argv = ["data", "show", "fashion-mnist", "--split", "train", "--data-dir", str(tmp_path),
            "-n", "5", "-o", str(out)] + (["--augmented"] if augmented else [])  # fmt: skip
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (3 * 116 + 4, 2 * 130 + 4)
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".png"] == ["fashion-mnist"]


def test_show_draws_evenly_spread_samples_and_their_augmented_views(tmp_path):
    write_idx_set(tmp_path / "fashion-mnist", train=12, gz=False)
    data = load_arrays("fashion-mnist", tmp_path, "train")
    index = torch.linspace(0, 11, 5).long()  # samples 0, 2, 5, 8, 11
    images, names = preview("fashion-mnist", tmp_path, "train", count=5)
    torch.testing.assert_close(images, data.images[index].float() / 255)
    assert names == [data.classes[label] for label in data.labels[index].tolist()]
    augmented, aug_names = preview("fashion-mnist", tmp_path, "train", count=5, augmented=True)
    assert augmented.shape == images.shape and sorted(aug_names) == sorted(names)
    plain_views = {tuple(image.flatten().tolist()) for image in images}
    assert any(tuple(image.flatten().tolist()) not in plain_views for image in augmented)


def test_show_erased_views_show_the_mean_in_one_box(tmp_path, capsys):
    write_idx_set(tmp_path / "fashion-mnist", train=12, gz=False)
    mean = per_pixel_mean(load_arrays("fashion-mnist", tmp_path, "train").images)
    options = {"count": 5, "augmented": True, "seed": 2}
    plain, names = preview("fashion-mnist", tmp_path, "train", **options)
    erased, erased_names = preview("fashion-mnist", tmp_path, "train", erase=1.0, **options)
    assert erased_names == names
    for e, p in zip(erased, plain, strict=True):
        changed = (e != p).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        box = (slice(rows[0].item(), rows[-1].item() + 1),
               slice(cols[0].item(), cols[-1].item() + 1))
        torch.testing.assert_close(e[:, box[0], box[1]],
                                   (mean[:, box[0], box[1]] * 255).round() / 255)
        assert changed[box].float().mean() > 0.9  # one box (a few mean pixels may equal p's)
    out = tmp_path / "g.png"
    argv = ["data", "show", "fashion-mnist", "--data-dir", str(tmp_path), "-o", str(out)]
    assert main(argv + ["--augmented", "--erase", "0.5"]) == 0 and out.exists()
    assert main(argv + ["--erase", "0.5"]) == 2
    assert "--erase is part of the training augmentation: add --augmented" in _error_line(capsys)
    assert main(argv + ["--augmented", "--erase", "2"]) == 2
    assert "--erase must be a probability in [0, 1], got 2.0" in _error_line(capsys)


def test_show_bad_input_is_one_line(tmp_path, capsys):
    argv = ["data", "show", "cifar10", "--data-dir", str(tmp_path / "none"), "-o", "x.png"]
    assert main(argv) == 2
    assert "does not exist" in _error_line(capsys)
    write_idx_set(tmp_path / "mnist")
    assert main(["data", "show", "mnist", "--data-dir", str(tmp_path), "--split", "val", "-o",
                 str(tmp_path / "g.png")]) == 2  # fmt: skip
    assert "mnist has no split 'val'" in _error_line(capsys)
    assert main(["data", "show", "mnist", "--data-dir", str(tmp_path), "-o",
                 str(tmp_path / "g.jpg")]) == 2
    assert "g.jpg: the file is PNG, so its name must end in .png" in _error_line(capsys)
    assert main(["data", "show", "mnist", "--data-dir", str(tmp_path), "-o",
                 str(tmp_path / "missing" / "g.png")]) == 2  # fmt: skip
    assert f"cannot write {tmp_path}/missing/g.png: folder" in _error_line(capsys)


def test_show_folder_tree_with_the_imagenet_augmentation(tmp_path, capsys):
    for name, colour in (("red", (200, 10, 10)), ("blue", (10, 10, 200))):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (40, 30), colour).save(tmp_path / "train" / name / "x.png")
    out = tmp_path / "grid.png"
    argv = ["data", "show", "folder", "--data-dir", str(tmp_path), "--augmented", "-o", str(out)]
    assert main(argv) == 0
    with Image.open(out) as image:
        grid = image.convert("RGB")
    assert grid.size == (2 * 228 + 4, 1 * 242 + 4)  # two 224x224 crops, labels underneath
    blue, red = grid.getpixel((4 + 112, 4 + 112)), grid.getpixel((4 + 228 + 112, 4 + 112))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]  # the mean was added back


@pytest.mark.parametrize("mirror, message", [
    ("http://example.com:abc/", "is not a valid URL (Port could not be cast"),
    ("https:///data/", "is not a valid URL: it names no host"),
])
def test_get_refuses_a_malformed_mirror(mirror, message, tmp_path, capsys):
    argv = ["data", "get", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", mirror]
    assert main(argv) == 2
    assert message in _error_line(capsys)


def test_list_says_what_each_data_set_holds_and_where_its_files_are(tmp_path, capsys):
    write_idx_set(tmp_path / "fashion-mnist", train=12, gz=False)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["data", "set"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == ["cifar10", "cifar100", "fashion-mnist", "folder", "imagenet", "mnist"]
    fashion = rows["fashion-mnist"].split()
    assert fashion[1:3] == ["10", "1x28x28"] and fashion[-1] == str(tmp_path / "fashion-mnist")
    assert "train55k (55,000)" in rows["fashion-mnist"]
    assert rows["imagenet"].split()[-1] == str(tmp_path / "imagenet")
    assert rows["cifar10"].split()[-1] == "-" and rows["mnist"].split()[-1] == "-"
    # ImageNet as the training command finds it: DIR/imagenet or DIR itself, with train/ or val/
    (tmp_path / "flat" / "val").mkdir(parents=True)
    (tmp_path / "empty" / "imagenet").mkdir(parents=True)
    for folder, where in (("flat", str(tmp_path / "flat")), ("empty", "-")):
        assert main(["data", "list", "--data-dir", str(tmp_path / folder)]) == 0
        (imagenet,) = [line for line in capsys.readouterr().out.splitlines()
                       if line.startswith("imagenet ")]
        assert imagenet.split()[-1] == where, folder
    assert main(["data", "list", "--data-dir", str(tmp_path / "none")]) == 2
    assert _error_line(capsys) == (f"reslab: error: data dir {tmp_path / 'none'} does not "
                                   "exist (or is not a folder)\n")


@pytest.mark.parametrize("release", ["binary", "python"])
def test_verify_compares_the_unpacked_files_with_the_kept_archive(tmp_path, capsys, monkeypatch,
                                                                  release):
    """CIFAR publishes only the archive's MD5: verify checks it, then each unpacked file against
    its member, so a changed byte in a file training reads is caught."""
    from reslab.data import cifar, registry

    build = tmp_path / "build"
    written = write_cifar10(build / "cifar-10-batches-bin")  # 3 images a file, taken as official
    info = registry.DATASETS["cifar10"]
    monkeypatch.setitem(registry.DATASETS, "cifar10", dataclasses.replace(
        info, counts={**info.counts, "train": 15, "test": 3}))
    fmt = cifar.FORMATS["cifar10"]
    if release == "python":
        write_cifar_python(build / "cifar-10-batches-py", written, "cifar10")
        fmt = cifar.PICKLE_FORMATS["cifar10"]
    (tmp_path / "data").mkdir()
    archive = make_tar(tmp_path / "data" / fmt.archive.filename, {
        f"{fmt.folder}/{path.name}": path.read_bytes()
        for path in sorted((build / fmt.folder).iterdir())})
    patched = dataclasses.replace(fmt, archive=dataclasses.replace(
        fmt.archive, md5=hashlib.md5(archive.read_bytes()).hexdigest()))
    monkeypatch.setitem(cifar.FORMATS if release == "binary" else cifar.PICKLE_FORMATS,
                        "cifar10", patched)
    shutil.copytree(build / fmt.folder, tmp_path / "data" / fmt.folder)
    argv = ["data", "verify", "cifar10", "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 0
    folder = tmp_path / "data" / fmt.folder
    assert f"MD5 {patched.archive.md5} official; the 7 files in {folder} are the archive's" \
        in capsys.readouterr().out
    renamed = tmp_path / "mine"  # the data dir may be the release folder itself, of any name
    shutil.copytree(folder, renamed)
    shutil.copy(archive, renamed / archive.name)
    assert main(["data", "verify", "cifar10", "--data-dir", str(renamed)]) == 0
    assert f"the 7 files in {renamed} are the archive's" in capsys.readouterr().out
    name = "data_batch_3" + (".bin" if release == "binary" else "")
    changed = tmp_path / "data" / fmt.folder / name
    content = bytearray(changed.read_bytes())
    content[-5] ^= 1  # one pixel
    changed.write_bytes(bytes(content))
    assert main(argv) == 2
    assert f"{name} differs from {fmt.folder}/{name} in the official archive" in _error_line(capsys)


def test_get_refuses_an_incomplete_copy_in_one_line(tmp_path, capsys):
    folder = tmp_path / "d" / "cifar-10-batches-bin"
    write_cifar10(folder)
    (folder / "data_batch_2.bin").unlink()
    assert main(["data", "get", "cifar10", "--data-dir", str(tmp_path / "d")]) == 2
    assert (f"cifar10: {folder} holds an incomplete or damaged copy ({folder}/data_batch_2.bin "
            "is missing); move it away and run this command again") in _error_line(capsys)
    mnist = tmp_path / "m" / "mnist"
    write_idx_set(mnist)
    (mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    assert main(["data", "get", "mnist", "--data-dir", str(tmp_path / "m")]) == 2
    assert "t10k-labels-idx1-ubyte(.gz) is missing" in _error_line(capsys)
