"""(Fashion-)MNIST IDX files: gz and raw read-back, damage, and the real Debian copy."""

import gzip

import pytest
import torch

from reslab.data import get_dataset, holdout_indices, idx, load_arrays
from reslab.data.idx import SYSTEM_DIRS
from reslab.errors import ReslabError
from tests.data.formats import idx_bytes, write_idx_set

FASHION = SYSTEM_DIRS["fashion-mnist"]
needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist absent"
)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_reads_back_exact_pixels_and_labels(tmp_path, name, gz):
    written = write_idx_set(tmp_path / name, gz=gz)
    for split in ("train", "test"):
        data = load_arrays(name, tmp_path, split)
        images, labels = written[split]
        assert data.images.shape == (len(images), 1, 28, 28)
        assert torch.equal(data.images[:, 0], images) and torch.equal(data.labels, labels)
    assert len(data.classes) == 10


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    written = write_idx_set(tmp_path / "mnist", gz=False)
    raw = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    raw.write_bytes(gzip.compress(raw.read_bytes()))  # gzip data under the raw name
    assert torch.equal(load_arrays("mnist", tmp_path, "test").images[:, 0], written["test"][0])


def _corrupt(tmp_path, name: str, data: bytes):
    write_idx_set(tmp_path / "mnist", gz=False)
    (tmp_path / "mnist" / name).write_bytes(data)


def test_dims_do_not_match_size(tmp_path):
    _corrupt(tmp_path, "t10k-images-idx3-ubyte", idx_bytes(torch.zeros(4, 28, 28))[:-10])
    with pytest.raises(ReslabError, match=r"t10k-images-idx3-ubyte: header dims 4x28x28 need "
                       r"3152 bytes, the \(decoded\) file has 3142"):
        load_arrays("mnist", tmp_path, "test")


def test_wrong_magic(tmp_path):
    _corrupt(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(torch.zeros(4, 28, 28)))
    with pytest.raises(ReslabError, match=r"t10k-labels-idx1-ubyte: IDX magic 0x00000803, "
                       r"expected 0x00000801"):
        load_arrays("mnist", tmp_path, "test")


def test_count_mismatch(tmp_path):
    _corrupt(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(torch.zeros(5)))
    with pytest.raises(ReslabError, match=r"t10k-images-idx3-ubyte has 4 images but "
                       r".*t10k-labels-idx1-ubyte has 5 labels"):
        load_arrays("mnist", tmp_path, "test")


def test_label_out_of_range(tmp_path):
    _corrupt(tmp_path, "t10k-labels-idx1-ubyte", idx_bytes(torch.tensor([1, 2, 12, 3])))
    with pytest.raises(ReslabError, match=r"t10k-labels-idx1-ubyte: label 12 at index 2, "
                       r"out of range 0..9"):
        load_arrays("mnist", tmp_path, "test")


def test_wrong_image_size(tmp_path):
    _corrupt(tmp_path, "t10k-images-idx3-ubyte", idx_bytes(torch.zeros(4, 32, 32)))
    with pytest.raises(ReslabError, match=r"images are 32x32, not 28x28"):
        load_arrays("mnist", tmp_path, "test")


def test_damaged_gzip(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ReslabError, match=r"t10k-images-idx3-ubyte.gz: damaged gzip data"):
        load_arrays("mnist", tmp_path, "test")


def test_gzip_bomb_stops_at_the_decoded_limit(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mnist", gz=True)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(torch.zeros(100, 28, 28, dtype=torch.uint8))))
    monkeypatch.setattr(idx, "MAX_DECODED", 50_000)  # the file decodes to 78,416 bytes
    with pytest.raises(ReslabError, match=r"t10k-images-idx3-ubyte.gz: decodes to more than "
                                          r"50000 bytes, far more than an IDX file"):
        load_arrays("mnist", tmp_path, "test")


def test_missing_file(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ReslabError, match=r"train-labels-idx1-ubyte\(.gz\) is missing"):
        load_arrays("mnist", tmp_path, "train")


def test_missing_root(tmp_path):
    with pytest.raises(ReslabError, match=r"data dir .*nowhere does not exist"):
        load_arrays("fashion-mnist", tmp_path / "nowhere", "train")


def test_holdout_split_is_fixed():
    # Pinned: the same indices on every machine (torch.randperm with SPLIT_SEED).
    train, val = holdout_indices(60_000)
    assert len(train) == 55_000 and len(val) == 5000
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(60_000))
    assert val[:5].tolist() == [15, 21, 25, 39, 47]
    assert torch.equal(holdout_indices(50_000)[1][:5], torch.tensor([9, 46, 53, 55, 58]))


@needs_fashion
def test_real_fashion_mnist_from_the_system_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("RESLAB_DATA_DIR", raising=False)  # no data dir named, and no ./data:
    monkeypatch.chdir(tmp_path)  # the system copy stands in
    train = load_arrays("fashion-mnist", None, "train")
    assert train.images.shape == (60_000, 1, 28, 28)
    assert train.labels[:5].tolist() == [9, 0, 0, 3, 0]
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    val = get_dataset("fashion-mnist", None, "val5k")
    _, val_idx = holdout_indices(60_000)
    assert len(val) == 5000 and val.data.split == "val5k"
    assert torch.equal(val.data.images, train.images[val_idx])
    assert val[0][1] == int(train.labels[val_idx[0]])
