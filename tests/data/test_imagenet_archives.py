"""ImageNet from its official archives: the MAT-file reader, the devkit's ground truth, and
``reslab data get imagenet --archives`` (MD5s, layout, resuming, unsafe members)."""

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from reslab.cli import main
from reslab.data import get_dataset, imagenet_archives
from reslab.data.imagenet import read_devkit
from reslab.data.matfile import loadmat, parse
from reslab.errors import ReslabError
from tests.data.formats import (devkit_meta_mat, make_tar, matlab_mat, random_images,
                                tar_bytes, write_imagenet_archives)  # fmt: skip

WNIDS = ["n01440764", "n01443537", "n09999999"]


def _savemat(variables: dict, *, compressed: bool) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=compressed)
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [True, False])
def test_matfile_reads_what_scipy_writes(compressed):
    """Every kind of array a devkit holds, compressed (-v7) or not (-v6)."""
    people = np.empty((2, 1), dtype=[("name", "O"), ("ages", "O")])
    people[0, 0] = (np.array(["Zoë"]), np.array([[1.5, 2.0, 3.0]]))
    people[1, 0] = (np.array(["Bo"]), np.zeros((1, 0)))
    cells = np.empty((1, 3), dtype=object)
    cells[0, :] = [np.array(["x"]), np.array([[7.0]]), np.array([[1, 2]], dtype=np.int16)]
    data = _savemat({
        "people": people, "rows": np.array(["ab", "cd"]), "cells": cells,
        "matrix": np.arange(6, dtype=np.int32).reshape(2, 3), "scalar": 4.25,
        "unsigned": np.array([[65535]], dtype=np.uint16), "empty_text": np.array([""]),
    }, compressed=compressed)  # fmt: skip
    got = parse(data, "test.mat")
    assert got["people"] == [{"name": "Zoë", "ages": [1.5, 2.0, 3.0]}, {"name": "Bo", "ages": []}]
    assert got["rows"] == ["ab", "cd"]
    assert got["cells"] == ["x", 7.0, [1, 2]]
    assert got["matrix"] == [0, 3, 1, 4, 2, 5]  # column-major, as MATLAB stores it
    assert got["scalar"] == 4.25 and got["unsigned"] == 65535 and got["empty_text"] == ""



@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("chars", ["utf-16", "utf-8"])
def test_matfile_reads_what_matlab_writes(order, chars):
    """MATLAB stores a double array in the smallest integer type that holds its values (the
    array flags keep the double class), writes small data elements, and char data as miUINT16
    or miUTF8, in either byte order: doubles still read as floats."""
    data = matlab_mat({"ids": [1, 300], "id": 7, "x": 2.5, "name": "Zoë", "none": [],
                       "s": [{"n": 1000, "w": "n01440764"}, {"n": 0, "w": ""}]},
                      order=order, chars=chars)  # fmt: skip
    got = parse(data, "m.mat")
    assert got == {"ids": [1.0, 300.0], "id": 7.0, "x": 2.5, "name": "Zoë", "none": [],
                   "s": [{"n": 1000.0, "w": "n01440764"}, {"n": 0.0, "w": ""}]}  # fmt: skip
    numbers = [*got["ids"], got["id"], got["s"][0]["n"], got["s"][1]["n"]]
    assert all(type(number) is float for number in numbers)


def test_devkit_meta_mat_as_matlab_writes_it(tmp_path):
    """The real devkit's meta.mat comes from MATLAB: its ILSVRC2012_IDs (doubles) are stored as
    miUINT8/miUINT16 integers."""
    synsets = [{"ILSVRC2012_ID": number, "WNID": wnid, "num_children": len(children),
                "children": children} for number, wnid, children in
               [(1, WNIDS[1], []), (300, WNIDS[0], []), (1001, "n00001740", [1, 300])]]  # fmt: skip
    devkit = make_tar(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": matlab_mat({"synsets": synsets}),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": b"300\n1\n",
    })  # fmt: skip
    assert read_devkit(devkit) == {"ILSVRC2012_val_00000001": WNIDS[0],
                                   "ILSVRC2012_val_00000002": WNIDS[1]}  # fmt: skip

@pytest.mark.parametrize(("mutate", "message"), [
    (lambda data: b"MATLAB 7.3 MAT-file" + data[19:], r"7\.3 \(HDF5\)"),
    (lambda data: b"PK\x03\x04" + data[4:], r"not a MAT-file"),
    (lambda data: data[:126] + b"XX" + data[128:], r"endian mark"),
    (lambda data: data[:-7], r"cut short"),
    (lambda data: data[:128] + (99).to_bytes(4, "little") + data[132:], r"element type 99"),
    (lambda data: data[:136] + (9).to_bytes(4, "little") + data[140:], "class 0 is not read"),
])  # fmt: skip
def test_matfile_damage_is_one_error(mutate, message):
    data = _savemat({"x": np.arange(40.0).reshape(1, 40)}, compressed=False)
    with pytest.raises(ReslabError, match=message):
        parse(mutate(data), "x.mat")


def test_matfile_refuses_complex_and_sparse(tmp_path):
    import scipy.sparse

    for value, message in ((np.array([[1 + 2j]]), "complex"),
                           (scipy.sparse.eye(2, format="csc"), "array class 5")):  # fmt: skip
        path = tmp_path / "x.mat"
        path.write_bytes(_savemat({"v": value}, compressed=True))
        with pytest.raises(ReslabError, match=message):
            loadmat(path)


def _as_read(value):
    """A value from ``scipy.io.loadmat`` as :mod:`reslab.data.matfile` represents it."""
    if value.dtype.names:
        return [{name: _as_read(item[name]) for name in value.dtype.names}
                for item in value.flatten(order="F")]  # fmt: skip
    if value.dtype == object:
        return [_as_read(item) for item in value.flatten(order="F")]
    flat = value.flatten(order="F").tolist()
    if value.dtype.kind == "U":
        return "" if not flat else flat[0] if len(flat) == 1 else flat
    return [] if not flat else flat[0] if len(flat) == 1 else flat


def test_matfile_reads_files_written_by_matlab_as_scipy_does():
    """SciPy's test data: MAT-files written by MATLAB 6.1 to 7.4 on big-endian Solaris and
    little-endian Linux (doubles, chars, cells, structs, nested ones, empties, 3-d arrays,
    compressed or not). Each is read as SciPy reads it, or refused in one line (level-4 and
    HDF5 files, sparse, complex, object and function arrays, damaged files)."""
    folder = Path(scipy.io.__file__).parent / "matlab" / "tests" / "data"
    files = sorted(folder.glob("*.mat"))
    if not files:
        pytest.skip("this SciPy wheel has no test data")
    same = 0
    for path in files:
        try:
            got = loadmat(path)
        except ReslabError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
            assert ("hdf5" in path.name) == ("7.3 (HDF5)" in str(exc))  # its header says 7.0
            continue
        if path.name == "test_empty_struct.mat":
            assert got["a"] == [{}]  # a 1x1 struct of no fields (SciPy: an object None)
            continue
        try:
            expected = scipy.io.loadmat(path)
        except Exception:  # noqa: BLE001 - damaged files SciPy refuses and this reader reads
            continue
        assert got == {k: _as_read(v) for k, v in expected.items() if not k.startswith("__")}, \
            path.name  # fmt: skip
        same += 1
    assert same >= 50  # the v6/v7 doubles, chars, cells, structs, ... of every platform


@pytest.fixture
def archives(tmp_path):
    """The three official archives: 3 classes of 2 training images, 5 validation images."""
    images = random_images(11, (3, 20, 24), seed=3)
    train = {wnid: [images[2 * i], images[2 * i + 1]] for i, wnid in enumerate(WNIDS)}
    val = [(WNIDS[k], images[6 + n]) for n, k in enumerate([2, 0, 1, 2, 0])]
    folder = tmp_path / "archives"
    expected = write_imagenet_archives(folder, train, val)
    return folder, expected


def test_devkit_ground_truth_goes_through_meta_mat(archives, tmp_path):
    """The devkit's IDs are not the sorted wnid order: meta.mat maps them (the parent synset,
    with children, is no class); the archive and the folder it unpacks to read the same."""
    folder, _ = archives
    labels = read_devkit(folder / "ILSVRC2012_devkit_t12.tar.gz")
    assert labels == {f"ILSVRC2012_val_{n:08d}": WNIDS[k] for n, k in
                      enumerate([2, 0, 1, 2, 0], start=1)}  # fmt: skip
    shutil.unpack_archive(folder / "ILSVRC2012_devkit_t12.tar.gz", tmp_path / "unpacked")
    assert read_devkit(tmp_path / "unpacked" / "ILSVRC2012_devkit_t12") == labels


def _tree(base):
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def test_get_imagenet_from_the_official_archives(archives, tmp_path, capsys):
    folder, expected = archives
    data = tmp_path / "data"
    argv = ["data", "get", "imagenet", "--archives", str(folder), "--data-dir", str(data),
            "--skip-md5"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"train: 6 images unpacked into {data / 'imagenet' / 'train'}",
                   f"val: 5 images unpacked into {data / 'imagenet' / 'val'}",
                   f"imagenet: {data / 'imagenet'}"]  # fmt: skip
    assert _tree(data / "imagenet") == expected  # byte for byte, nothing else left behind
    assert sorted(p.name for p in (data / "imagenet").iterdir()) == ["train", "val"]
    train, val = (get_dataset("imagenet", data, split) for split in ("train", "val"))
    assert train.classes == val.classes == WNIDS
    by_name = {path.rsplit("/", 1)[1]: label for path, label in val.samples}
    assert [by_name[f"ILSVRC2012_val_{n:08d}.JPEG"] for n in range(1, 6)] == [2, 0, 1, 2, 0]
    assert main(argv) == 0  # both splits there: nothing unpacked again
    assert "train: " in capsys.readouterr().out and _tree(data / "imagenet") == expected


def test_archives_are_checked_against_the_official_md5(archives, tmp_path, monkeypatch, capsys):
    folder, expected = archives
    argv = ["data", "get", "imagenet", "--archives", str(folder), "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ILSVRC2012_devkit_t12.tar.gz: MD5 " in err and "is not the official" in err  # first
    assert not (tmp_path / "imagenet" / "train").exists()
    official = {name: hashlib.md5((folder / name).read_bytes()).hexdigest()
                for name in imagenet_archives.OFFICIAL_MD5}  # fmt: skip
    monkeypatch.setattr(imagenet_archives, "OFFICIAL_MD5", official)
    assert main(argv) == 0
    assert _tree(tmp_path / "imagenet") == expected


def test_interrupted_training_unpack_goes_on_from_the_last_whole_class(archives, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    folder, expected = archives
    calls, failures = [], [4]  # the disk fills at the second image of the second class
    copy = imagenet_archives.copy_member

    def failing_copy(tar, member, target):
        calls.append(member.name)
        if len(calls) in failures:
            failures.clear()
            raise OSError(28, "No space left on device")
        copy(tar, member, target)

    monkeypatch.setattr(imagenet_archives, "copy_member", failing_copy)
    base = tmp_path / "imagenet"
    with pytest.raises(ReslabError, match="No space left on device.*go on from the last whole"):
        imagenet_archives.unpack_train(folder / "ILSVRC2012_img_train.tar", base / "train")
    assert not (base / "train").exists()
    assert [p.name for p in (base / ".train.partial").iterdir() if not p.name.startswith(".")] \
        == [WNIDS[0]]  # fmt: skip
    calls.clear()
    count = imagenet_archives.unpack_train(folder / "ILSVRC2012_img_train.tar", base / "train")
    assert count == 4 and len(calls) == 4  # the first class is not unpacked again
    assert _tree(base) == {k: v for k, v in expected.items() if k.startswith("train/")}


@pytest.mark.parametrize(("inner", "message"), [
    ({"../evil.JPEG": b"x"}, r"'\.\./evil\.JPEG' is not a plain file"),
    ({"sub/a.JPEG": b"x"}, r"'sub/a\.JPEG' is not a plain file"),
])  # fmt: skip
def test_unsafe_members_are_not_extracted(tmp_path, inner, message):
    archive = make_tar(tmp_path / "ILSVRC2012_img_train.tar",
                       {f"{WNIDS[0]}.tar": tar_bytes(inner, compression="")}, compression="")
    with pytest.raises(ReslabError, match=message):
        imagenet_archives.unpack_train(archive, tmp_path / "out" / "train")
    # '../evil.JPEG' would land in out/.train.partial/, not in tmp_path: look everywhere
    assert not list(tmp_path.rglob("evil.JPEG")) and not (tmp_path / "out" / "train").exists()


def test_links_and_foreign_members_are_refused(tmp_path):
    linked = tmp_path / "ILSVRC2012_img_val.tar"
    make_tar(linked, {}, links={"ILSVRC2012_val_00000001.JPEG": "/etc/passwd"}, compression="")
    with pytest.raises(ReslabError, match="is not a plain file"):
        imagenet_archives.unpack_val(linked, {"ILSVRC2012_val_00000001": WNIDS[0]},
                                     tmp_path / "val")  # fmt: skip
    foreign = make_tar(tmp_path / "ILSVRC2012_img_train.tar", {"readme.txt": b"hi"},
                       compression="")  # fmt: skip
    with pytest.raises(ReslabError, match=r"'readme.txt' is not a <wnid>.tar"):
        imagenet_archives.unpack_train(foreign, tmp_path / "train")


def test_validation_images_must_match_the_ground_truth(archives, tmp_path):
    folder, _ = archives
    labels = read_devkit(folder / "ILSVRC2012_devkit_t12.tar.gz")
    archive = folder / "ILSVRC2012_img_val.tar"
    with pytest.raises(ReslabError, match=r"5 images, the devkit's ground truth has 6"):
        imagenet_archives.unpack_val(archive, {**labels, "ILSVRC2012_val_00000006": WNIDS[0]},
                                     tmp_path / "val")  # fmt: skip
    assert not (tmp_path / "val").exists()
    twice = make_tar(tmp_path / "twice.tar", {"ILSVRC2012_val_00000001.JPEG": b"a"},
                     compression="")  # fmt: skip
    with tarfile.open(twice, "a") as tar:  # the same name again, in place of image 2
        info = tarfile.TarInfo("ILSVRC2012_val_00000001.JPEG")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"b"))
    with pytest.raises(ReslabError, match=r"ILSVRC2012_val_00000001.JPEG is in the archive twice"):
        imagenet_archives.unpack_val(twice, {"ILSVRC2012_val_00000001": WNIDS[0],
                                             "ILSVRC2012_val_00000002": WNIDS[1]},
                                     tmp_path / "val")  # fmt: skip
    del labels["ILSVRC2012_val_00000003"]
    with pytest.raises(ReslabError, match=r"ILSVRC2012_val_00000003.JPEG has no ground truth"):
        imagenet_archives.unpack_val(archive, labels, tmp_path / "val")


@pytest.mark.parametrize(("truth", "message"), [
    (b"1\n2\n7\n", r"ground_truth.txt:3: '7' is not the ILSVRC2012_ID of a class"),
    (b"1\nx\n", r"ground_truth.txt:2: 'x'"),
    (b"", r"ground_truth.txt is empty"),
])  # fmt: skip
def test_devkit_ground_truth_errors(tmp_path, truth, message):
    meta = devkit_meta_mat([(1, WNIDS[0], []), (2, WNIDS[1], []), (3, "n00001740", [1, 2])])
    devkit = make_tar(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": meta,
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": truth,
    })  # fmt: skip
    with pytest.raises(ReslabError, match=message):
        read_devkit(devkit)


def test_flat_val_labelled_by_the_devkit(archives, tmp_path):
    """A flat val/ (the validation archive unpacked by hand) with the devkit archive beside it,
    and no Kaggle CSV."""
    folder, expected = archives
    base = tmp_path / "imagenet"
    (base / "val").mkdir(parents=True)
    shutil.unpack_archive(folder / "ILSVRC2012_img_val.tar", base / "val", format="tar")
    shutil.copy(folder / "ILSVRC2012_devkit_t12.tar.gz", base)
    val = get_dataset("imagenet", tmp_path, "val")
    assert val.classes == WNIDS and val.targets == [2, 0, 1, 2, 0]


@pytest.mark.parametrize(("argv", "message"), [
    (["data", "get", "imagenet"], "imagenet needs an account to download"),
    (["data", "get", "cifar10", "--archives", "."], "--archives is for imagenet"),
    (["data", "get", "mnist", "--skip-md5"], "--skip-md5 is for --archives"),
    (["data", "get", "imagenet", "--archives", ".", "--mirror", "https://x/"], "no mirrors"),
    (["data", "get", "imagenet", "--archives", "missing"], "missing: not a folder"),
])  # fmt: skip
def test_bad_get_arguments_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_validation_archive_needs_the_devkit(archives, tmp_path, capsys):
    folder, _ = archives
    (folder / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    argv = ["data", "get", "imagenet", "--archives", str(folder), "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "ILSVRC2012_img_val.tar needs ILSVRC2012_devkit_t12.tar.gz" in capsys.readouterr().err


def test_everything_is_checked_before_anything_is_unpacked(archives, tmp_path, capsys):
    """A devkit that cannot be read stops the command before the training archive (hours for
    the real one) is touched; a val/ already there needs no devkit to unpack train/."""
    folder, expected = archives
    devkit = folder / "ILSVRC2012_devkit_t12.tar.gz"
    devkit.write_bytes(devkit.read_bytes()[:100])
    argv = ["data", "get", "imagenet", "--archives", str(folder), "--data-dir", str(tmp_path),
            "--skip-md5"]  # fmt: skip
    assert main(argv) == 2
    assert "ILSVRC2012_devkit_t12.tar.gz: cannot read the archive" in capsys.readouterr().err
    assert not (tmp_path / "imagenet").exists() or not any((tmp_path / "imagenet").iterdir())
    devkit.unlink()
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"val: {tmp_path / 'imagenet' / 'val'} is already there (remove it to unpack again)",
        f"train: 6 images unpacked into {tmp_path / 'imagenet' / 'train'}"]
