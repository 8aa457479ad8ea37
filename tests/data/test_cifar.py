"""CIFAR-10/100 binary and python files: exact read-back and every kind of damage."""

import numpy as np
import pytest
import torch

from reslab.data import dataset_info, get_dataset, load_arrays
from reslab.data.registry import CIFAR10_CLASSES
from reslab.errors import ReslabError
from tests.data.formats import (
    cifar_bytes,
    random_images,
    write_cifar10,
    write_cifar100,
    write_cifar_python,
    write_pickle,
)


@pytest.fixture
def cifar10(tmp_path):
    return tmp_path, write_cifar10(tmp_path / "cifar-10-batches-bin")


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_reads_back_exact_pixels_and_labels(cifar10, split):
    root, written = cifar10
    data = load_arrays("cifar10", root, split)
    images, labels = written[split]
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert torch.equal(data.images, images) and torch.equal(data.labels, labels)
    assert data.classes == list(CIFAR10_CLASSES) and (data.name, data.split) == ("cifar10", split)


def test_cifar10_plane_order_is_red_green_blue(tmp_path):
    # One record whose R, G and B planes are constant 10, 20, 30; pixel (0, 1) of R is 99.
    folder = tmp_path / "cifar-10-batches-bin"
    record = bytearray([7] + [10] * 1024 + [20] * 1024 + [30] * 1024)
    record[1 + 1] = 99
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(bytes(record))
    data = load_arrays("cifar10", folder, "test")  # root may be the release folder itself
    assert data.labels.tolist() == [7]
    assert data.images[0, :, 5, 5].tolist() == [10, 20, 30]
    assert data.images[0, 0, 0, 1] == 99 and data.images[0, 0, 0, 0] == 10


def test_cifar100_uses_fine_labels(tmp_path):
    written = write_cifar100(tmp_path / "cifar-100-binary")
    for split in ("train", "test"):
        data = load_arrays("cifar100", tmp_path, split)
        assert torch.equal(data.images, written[split][0])
        assert torch.equal(data.labels, written[split][1])
    assert data.labels.max() >= 20  # fine, not coarse
    assert len(data.classes) == 100 and data.classes[99] == "worm"


def test_get_dataset_wraps_arrays_with_transform(cifar10):
    root, written = cifar10
    dataset = get_dataset("cifar10", root, "test", transform=lambda x: x.float() / 255)
    image, label = dataset[2]
    assert torch.equal(image, written["test"][0][2].float() / 255)
    assert label == int(written["test"][1][2]) and len(dataset) == 3


def test_meta_file_with_wrong_class_count(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-bin" / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(ReslabError, match=r"batches.meta.txt: 2 class names, expected 10"):
        load_arrays("cifar10", root, "train")


def test_size_not_a_multiple_of_the_record(cifar10):
    root, _ = cifar10
    path = root / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    with pytest.raises(ReslabError, match=r"data_batch_2.bin: size 9319 bytes is not a whole "
                       r"number of 3073-byte records"):
        load_arrays("cifar10", root, "test")


def test_truncated_mid_record(cifar10):
    root, _ = cifar10
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ReslabError, match=r"test_batch.bin: size 5000 .*truncated"):
        load_arrays("cifar10", root, "test")


def test_truncated_at_a_record_boundary(cifar10):
    root, _ = cifar10
    path = root / "cifar-10-batches-bin" / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[: 3073 * 2])
    with pytest.raises(ReslabError, match=r"data_batch_4.bin: truncated: 2 records, the other "
                       r"files imply 3"):
        load_arrays("cifar10", root, "train")


def test_cifar100_truncated_train_file(tmp_path):
    write_cifar100(tmp_path / "cifar-100-binary", test=2)
    path = tmp_path / "cifar-100-binary" / "train.bin"
    path.write_bytes(path.read_bytes()[: 3074 * 7])
    with pytest.raises(ReslabError, match=r"train.bin: truncated: 7 records, .* imply 10"):
        load_arrays("cifar100", tmp_path, "test")


@pytest.mark.parametrize(("name", "labels", "message"), [
    ("cifar10", [3, 10, 1], r"test_batch.bin: record 1 has label byte 10, out of range 0..9"),
    ("cifar100", [[1, 5], [25, 5]], r"test.bin: record 1 has label byte 25, out of range 0..19"),
    ("cifar100", [[1, 5], [2, 100]], r"test.bin: record 1 has label byte 100, out of range 0..99"),
])  # fmt: skip
def test_label_byte_out_of_range(tmp_path, name, labels, message):
    writer = write_cifar10 if name == "cifar10" else write_cifar100
    info = dataset_info(name)
    writer(tmp_path / info.folder)
    test_file = tmp_path / info.folder / ("test_batch.bin" if name == "cifar10" else "test.bin")
    images = random_images(len(labels), (3, 32, 32), seed=5)
    test_file.write_bytes(cifar_bytes(torch.tensor(labels), images))
    if name == "cifar10":  # keep the official proportions: 3 records in every file
        test_file.write_bytes(cifar_bytes(torch.tensor(labels), images))
    else:
        (tmp_path / info.folder / "train.bin").write_bytes(
            cifar_bytes(torch.tensor([[0, 0]] * 10), random_images(10, (3, 32, 32), seed=6))
        )
    with pytest.raises(ReslabError, match=message):
        load_arrays(name, tmp_path, "test")


def test_missing_file(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(ReslabError, match=r"data_batch_5.bin is missing"):
        load_arrays("cifar10", root, "test")


def test_holdout_split_needs_the_full_training_set(cifar10):
    root, _ = cifar10
    with pytest.raises(ReslabError, match=r"full 50000-image training set, but the files hold 15"):
        load_arrays("cifar10", root, "val5k")


def test_no_files_says_where_it_looked_and_how_to_get_them(tmp_path):
    with pytest.raises(ReslabError) as error:
        load_arrays("cifar10", tmp_path, "train")
    assert str(error.value) == (
        f"cifar10: no files in {tmp_path}/cifar-10-batches-bin, {tmp_path}/cifar-10-batches-py "
        f"or {tmp_path}; run `reslab data get cifar10 --data-dir {tmp_path}`")


# The python release (cifar-10-batches-py, cifar-100-python): pickles, read safely.

PY_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@pytest.fixture(params=["cifar10", "cifar100"])
def python_release(request, tmp_path):
    """The same images and labels in both releases, each in its own data dir."""
    name = request.param
    binary = tmp_path / "binary"
    if name == "cifar10":
        written = write_cifar10(binary / "cifar-10-batches-bin")
    else:
        written = write_cifar100(binary / "cifar-100-binary")
    write_cifar_python(tmp_path / "python" / PY_FOLDERS[name], written, name)
    return name, tmp_path / "binary", tmp_path / "python", written


@pytest.mark.parametrize("split", ["train", "test"])
def test_python_release_reads_what_the_binary_one_holds(python_release, split):
    name, binary, python, written = python_release
    from_python, from_binary = (load_arrays(name, root, split) for root in (python, binary))
    assert torch.equal(from_python.images, written[split][0])
    assert torch.equal(from_python.labels, written[split][1])  # CIFAR-100: the fine labels
    assert torch.equal(from_python.images, from_binary.images)
    assert from_python.classes == from_binary.classes == list(dataset_info(name).classes)


def test_python_release_is_found_in_its_folder_or_the_data_dir_itself(python_release):
    name, _, python, written = python_release
    folder = python / PY_FOLDERS[name]
    assert torch.equal(load_arrays(name, folder, "test").images, written["test"][0])


def test_binary_release_wins_where_both_are(python_release):
    name, binary, python, _ = python_release
    (binary / PY_FOLDERS[name]).symlink_to(python / PY_FOLDERS[name])
    from reslab.data.datasets import locate
    assert locate(dataset_info(name), binary).name in {"cifar-10-batches-bin", "cifar-100-binary"}


class _Planted:
    """A pickle payload that would create a file if the unpickler ran it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_python_release_never_runs_code_from_a_pickle(tmp_path):
    written = write_cifar10(tmp_path / "bin" / "cifar-10-batches-bin")
    folder = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar_python(folder, written, "cifar10")
    planted = tmp_path / "planted"
    write_pickle(folder / "test_batch", {"data": _Planted(planted), "labels": []})
    with pytest.raises(ReslabError, match=r"test_batch: not a CIFAR python file \(Unpickling"
                                          r"Error: it names [\w.]*open, which a data file"):
        load_arrays("cifar10", tmp_path / "py", "test")
    assert not planted.exists()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: path.write_bytes(path.read_bytes()[:-100]), r"not a CIFAR python file"),
    (lambda path: path.write_bytes(b"\x00" * 50), r"not a CIFAR python file"),
    (lambda path: write_pickle(path, [1, 2]), r"holds a list, not a dict"),
    (lambda path: write_pickle(path, {"data": np.zeros((3, 3072), np.float32), "labels": [0] * 3}),
     r"'data' is not a uint8 array \[N, 3072\]"),
    (lambda path: write_pickle(path, {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1]}),
     r"2 labels for 3 images"),
    (lambda path: write_pickle(path, {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 10, 1]}),
     r"image 1 has label 10, out of range 0..9"),
    (lambda path: write_pickle(path, {"data": np.zeros((3, 3072), np.uint8), "labels": "abc"}),
     r"'labels' is not a list of class numbers"),
    (lambda path: path.unlink(), r"test_batch is missing"),
])  # fmt: skip
def test_python_release_damage_is_one_message(tmp_path, damage, message):
    written = write_cifar10(tmp_path / "bin" / "cifar-10-batches-bin")
    folder = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar_python(folder, written, "cifar10")
    damage(folder / "test_batch")
    with pytest.raises(ReslabError, match=message):
        load_arrays("cifar10", tmp_path / "py", "test")


def test_python_release_batch_cut_to_fewer_images(tmp_path):
    written = write_cifar10(tmp_path / "bin" / "cifar-10-batches-bin")
    folder = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar_python(folder, written, "cifar10")
    write_pickle(folder / "data_batch_2", {"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    with pytest.raises(ReslabError, match=r"data_batch_2: truncated: 1 records, the other files "
                                          r"imply 3"):
        load_arrays("cifar10", tmp_path / "py", "train")


def test_python_release_meta_names(tmp_path):
    written = write_cifar10(tmp_path / "bin" / "cifar-10-batches-bin")
    folder = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar_python(folder, written, "cifar10")
    names = [f"class {i}" for i in range(10)]
    write_pickle(folder / "batches.meta", {"label_names": names})
    assert load_arrays("cifar10", tmp_path / "py", "test").classes == names
    # written by Python 3 code: bytes keys and names, numpy labels
    write_pickle(folder / "batches.meta", {b"label_names": [name.encode() for name in names]})
    images, labels = written["test"]
    write_pickle(folder / "test_batch", {b"data": images.reshape(3, -1).numpy(),
                                         b"labels": list(labels.numpy())})
    data = load_arrays("cifar10", tmp_path / "py", "test")
    assert data.classes == names and torch.equal(data.labels, labels)
    write_pickle(folder / "batches.meta", {"label_names": names[:9]})
    with pytest.raises(ReslabError, match=r"batches.meta: 9 class names, expected 10"):
        load_arrays("cifar10", tmp_path / "py", "test")
    write_pickle(folder / "batches.meta", {"names": names})
    with pytest.raises(ReslabError, match=r"no list of class names under 'label_names'"):
        load_arrays("cifar10", tmp_path / "py", "test")


def test_binary_meta_file_that_is_not_text(cifar10):
    root, _ = cifar10
    (root / "cifar-10-batches-bin" / "batches.meta.txt").write_bytes(b"\xff\xfe\x00air\x80")
    with pytest.raises(ReslabError, match=r"batches.meta.txt: not UTF-8 text"):
        load_arrays("cifar10", root, "test")


def _doubling_labels(levels: int) -> list:
    """Lists that each hold the one before it twice: pickled with memo references, a few bytes
    a level, but ``2**levels`` numbers to ``torch.tensor``."""
    labels = [0]
    for _ in range(levels):
        labels = [labels, labels]
    return labels


@pytest.mark.parametrize("labels", [_doubling_labels(26), [0.0, 1.5, 2.0], [[0], [1], [2]]])
def test_python_release_labels_must_be_flat_integers(tmp_path, labels):
    written = write_cifar10(tmp_path / "bin" / "cifar-10-batches-bin")
    folder = tmp_path / "py" / "cifar-10-batches-py"
    write_cifar_python(folder, written, "cifar10")
    write_pickle(folder / "test_batch", {"data": np.zeros((3, 3072), np.uint8), "labels": labels})
    with pytest.raises(ReslabError, match=r"test_batch: 'labels' is not a list of class numbers"):
        load_arrays("cifar10", tmp_path / "py", "test")
