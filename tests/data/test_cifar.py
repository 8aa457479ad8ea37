"""CIFAR-10/100 binary files: exact read-back and every kind of damage."""

import pytest
import torch

from reslab.data import dataset_info, get_dataset, load_arrays
from reslab.data.registry import CIFAR10_CLASSES
from reslab.errors import ReslabError
from tests.data.formats import cifar_bytes, random_images, write_cifar10, write_cifar100


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


def test_no_files_says_how_to_get_them(tmp_path):
    with pytest.raises(ReslabError, match=r"cifar10: no files in .*reslab data get cifar10"):
        load_arrays("cifar10", tmp_path, "train")
