"""reslab.data.safe_pickle: pickles of plain data and numpy arrays read without running code,
and the crafted pickles that tried to get past it (a review found each of the attacks below
against an unpickler that handed out numpy's real classes)."""

import io
import pickle
import struct

import numpy as np
import pytest

from reslab.data import safe_pickle

# Written by Python 2.7's cPickle at protocol 2, with the globals and states numpy's __reduce__
# gives there (how CIFAR's python release was written): {"data": uint8 [2, 6] of 0, 21, ...,
# 231, "labels": [3, 8], "batch_label": ..., "filenames": [...]}.
PYTHON2_PICKLE = (
    b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\n"
    b"q\x04K\x00\x85q\x05U\x01b\x87Rq\x06(K\x01K\x02K\x06\x86q\x07cnumpy\ndtype\nq\x08U\x02u1q"
    b"\tK\x00K\x01\x87Rq\n(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0bb\x89U"
    b"\x0c\x00\x15*?Ti~\x93\xa8\xbd\xd2\xe7tbU\x06labelsq\x0c]q\r(K\x03K\x08eU\x0bbatch_labelq"
    b"\x0eU\x14testing batch 1 of 1q\x0fU\tfilenamesq\x10]q\x11(U\x05a.pngq\x12U\x05b.pngq\x13"
    b"eu."
)


def load(data: bytes):
    return safe_pickle.load(io.BytesIO(data))


def test_a_python2_pickle_reads_as_the_release_needs():
    entry = load(PYTHON2_PICKLE)
    assert entry["labels"] == [3, 8] and entry["filenames"] == ["a.png", "b.png"]
    assert entry["data"].dtype == np.uint8 and entry["data"].flags.writeable
    assert entry["data"].tolist() == [[0, 21, 42, 63, 84, 105], [126, 147, 168, 189, 210, 231]]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_python3_pickles_of_arrays_numbers_and_bytes_round_trip(protocol):
    entry = {b"data": np.arange(24, dtype=np.uint8).reshape(4, 6),
             "wide": np.arange(6, dtype=">i4").reshape(2, 3, order="F"),
             "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
             "labels": [np.int64(3), np.int64(-1), 7], "empty": b"", "raw": b"\x00\xff",
             "flag": np.bool_(True), "nested": [{"x": np.zeros((0, 3), np.uint8)}]}
    back = load(pickle.dumps(entry, protocol=protocol))
    for key in (b"data", "wide", "fortran"):
        assert back[key].dtype == entry[key].dtype and np.array_equal(back[key], entry[key])
    assert back["labels"] == [3, -1, 7] and type(back["labels"][0]) is int
    assert (back["empty"], back["raw"], back["flag"]) == (b"", b"\x00\xff", True)
    assert back["nested"][0]["x"].shape == (0, 3)


class _Planted:
    def __reduce__(self):
        return (print, ("ran",))


def _array_ops(shape_ops: bytes, raw: bytes, dtype: bytes = b"u1") -> bytes:
    """``_reconstruct(ndarray, (0,), 'b')`` then BUILD with numpy's state for ``raw``."""
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
            b"(K\x01" + shape_ops + b"cnumpy\ndtype\nU" + bytes([len(dtype)]) + dtype
            + b"K\x00K\x01\x87R\x89B" + struct.pack("<I", len(raw)) + raw + b"tb")


@pytest.mark.parametrize(("data", "message"), [
    (pickle.dumps({"x": _Planted()}, protocol=2), r"it names (__builtin__|builtins).print"),
    (pickle.dumps({"x": np.array([object()])}, protocol=2), r"it names (__builtin__|builtins).object"),
    # an array that does not add up: 4 elements, 3 bytes
    (b"\x80\x02" + _array_ops(b"K\x04\x85", b"abc") + b".", r"shape \(4,\) .* with 3 bytes"),
    # an object array's state (a list) instead of raw bytes
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
     b"(K\x01K\x01\x85cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R\x89]K\x05atb.",
     r"dtype 'O8' is not a plain number type"),
    # the review's use-after-free: an ndarray viewing another's buffer, then the first rebuilt
    (b"\x80\x02cnumpy\nndarray\nK\x02\x85U\x02u1U\x02ab\x87R.", r"numpy.ndarray called"),
    (b"\x80\x02" + _array_ops(b"K\x01\x85", b"x") + b"(K\x01K\x01\x85cnumpy\ndtype\nU\x02u1"
     b"K\x00K\x01\x87R\x89U\x01ytb.", r"an array built twice"),
    # the review's zero-stride bomb: ndarray(shape, dtype, buffer, offset, strides) called
    (b"\x80\x02cnumpy\nndarray\n(J\x00\xe1\xf5\x05M\x00\x0c\x86U\x02u1U\x01\x07K\x00K\x00K\x00"
     b"\x86tR.", r"numpy.ndarray called"),
    # the review's codec bomb: _codecs.encode(..., 'hex') nested
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x03\x00\x00\x00hex\x86R.",
     r"_codecs.encode with 'hex'"),
    # an array with no BUILD: uninitialised memory of any size
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\xff\xff\xff\x7f\x85U"
     b"\x01b\x87R.", r"an array without its data"),
    # BUILD on a global: would set __defaults__ on the function behind it
    (b"\x80\x02c_codecs\nencode\n}U\x0c__defaults__U\x01xsb.", r"sets the state of a global"),
])  # fmt: skip
def test_crafted_pickles_are_refused(data, message):
    with pytest.raises(Exception, match=message):
        load(data)


def _doubling_lists(levels: int) -> bytes:
    """A protocol-2 pickle of ``levels`` lists, each holding the one before it twice (by memo):
    about 8 bytes a level, ``2**levels`` paths through it."""
    body = b"\x80\x02]q\x00"
    for level in range(levels):
        body += b"(h" + bytes([level]) + b"h" + bytes([level]) + b"lq" + bytes([level + 1])
    return body + b"."


def test_shared_lists_stay_shared_instead_of_doubling_each_level():
    top = load(_doubling_lists(200))  # copying every path: 2**200 lists
    inner = top
    for _ in range(200):
        assert len(inner) == 2 and inner[0] is inner[1]
        inner = inner[0]
    assert inner == []


def test_a_cycle_reads_as_a_cycle_with_its_arrays():
    data = np.arange(3, dtype=np.uint8)
    loop = [data]
    loop.append(loop)
    back = load(pickle.dumps({"loop": loop}, protocol=2))["loop"]
    assert back[1] is back and np.array_equal(back[0], data)
