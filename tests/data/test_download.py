"""Downloads (over file:// URLs), MD5 checks and safe tar extraction."""

import dataclasses
import hashlib
import io
import tarfile

import pytest
import torch

from reslab.data import cifar as cifar_format
from reslab.data import download, load_arrays
from reslab.data.download import Resource, fetch, safe_extract
from reslab.errors import ReslabError
from tests.data.formats import make_tar, write_cifar10, write_idx_set


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


def test_fetch_checks_md5_and_writes_the_file(tmp_path, mirror):
    (mirror / "a.bin").write_bytes(b"payload")
    resource = Resource("a.bin", _md5(b"payload"), ("file:///nonexistent/", mirror.as_uri()))
    path = fetch(resource, tmp_path / "out")  # the first mirror fails, the second works
    assert path.read_bytes() == b"payload"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]  # no temporary files


def test_wrong_md5_is_kept_aside_and_not_used(tmp_path, mirror):
    (mirror / "a.bin").write_bytes(b"tampered")
    resource = Resource("a.bin", _md5(b"payload"), (mirror.as_uri(),))
    message = r"mirror/a.bin: MD5 \w+ is not the official \w+ \(kept aside as .*a.bin.bad, not"
    with pytest.raises(ReslabError, match=message):
        fetch(resource, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin.bad"]


def test_safe_extract(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", {"pkg/a.txt": b"A", "pkg/sub/b.txt": b"B"})
    dest = tmp_path / "dest"
    dest.mkdir()
    assert safe_extract(archive, dest) == [dest / "pkg"]
    assert (dest / "pkg" / "sub" / "b.txt").read_bytes() == b"B"
    assert sorted(p.name for p in dest.iterdir()) == ["pkg"]
    with pytest.raises(ReslabError, match=r"pkg already exists"):
        safe_extract(archive, dest)


@pytest.mark.parametrize(("members", "links", "message"), [
    ({"pkg/a": b"A", "pkg/../../evil": b"E"}, None, r"'pkg/../../evil' points outside"),
    ({"/etc/evil": b"E"}, None, r"'/etc/evil' points outside"),
    ({"pkg/a": b"A"}, {"pkg/link": "/etc/passwd"}, r"'pkg/link' is a link"),
])  # fmt: skip
def test_unsafe_members_refuse_the_whole_archive(tmp_path, members, links, message):
    archive = make_tar(tmp_path / "bad.tar.gz", members, links=links)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ReslabError, match=message):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil").exists()


def test_damaged_archive(tmp_path):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(ReslabError, match=r"x.tar.gz: cannot extract"):
        safe_extract(archive, tmp_path)


def _cifar_archive(tmp_path, mirror):
    """A cifar-10-binary.tar.gz of a tiny release; returns the arrays written."""
    written = write_cifar10(tmp_path / "build" / "cifar-10-batches-bin")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    (mirror / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    return written, _md5(buffer.getvalue())


def test_download_cifar_end_to_end(tmp_path, mirror, monkeypatch):
    written, md5 = _cifar_archive(tmp_path, mirror)
    fmt = cifar_format.FORMATS["cifar10"]
    monkeypatch.setitem(cifar_format.FORMATS, "cifar10", dataclasses.replace(
        fmt, archive=dataclasses.replace(fmt.archive, md5=md5, mirrors=(mirror.as_uri(),))))
    data = load_arrays("cifar10", tmp_path / "data", "test", download=True)
    assert torch.equal(data.images, written["test"][0])
    assert (tmp_path / "data" / "cifar-10-binary.tar.gz").is_file()
    assert download("cifar10", tmp_path / "data") == tmp_path / "data" / "cifar-10-batches-bin"


def test_download_cifar_with_the_official_md5_refuses_a_wrong_archive(tmp_path, mirror):
    _cifar_archive(tmp_path, mirror)
    with pytest.raises(ReslabError, match=r"is not the official c32a1d4ab5d03f1284b67883e8d87530"):
        download("cifar10", tmp_path / "data", mirrors=(mirror.as_uri(),))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["cifar-10-binary.tar.gz.bad"]


def test_download_idx_files(tmp_path, mirror, monkeypatch):
    from reslab.data import idx

    written = write_idx_set(mirror, gz=True)
    resources = tuple(
        dataclasses.replace(r, md5=_md5((mirror / r.filename).read_bytes()))
        for r in idx.RESOURCES["mnist"]
    )
    monkeypatch.setitem(idx.RESOURCES, "mnist", resources)
    folder = download("mnist", tmp_path / "data", mirrors=(mirror.as_uri(),))
    assert folder == tmp_path / "data" / "mnist"
    assert torch.equal(load_arrays("mnist", tmp_path / "data", "train").labels, written["train"][1])
