"""Reading pickles of plain data and numpy arrays without running the code a pickle may name.

A pickle is a program: loading one calls whatever functions it names. CIFAR's python release
is a set of pickles (dicts of lists, strings, numbers and uint8 arrays), so reslab reads them
with :func:`load`, whose unpickler never imports or calls anything real. Each global a numpy
array's pickle names is replaced by a stand-in that builds the array from the file's own bytes
after checking them:

- ``numpy.core.multiarray._reconstruct`` + ``numpy.ndarray`` + BUILD (protocols 0-4, Python 2
  and 3) and ``numpy.core.numeric._frombuffer`` (protocol 5): an array whose byte count must
  equal its shape times its item size, with a plain number dtype (bool, int, uint, float);
- ``numpy.dtype``: such a dtype, by name and byte order;
- ``numpy.core.multiarray.scalar``: one number of such a dtype;
- ``_codecs.encode(text, "latin1")`` and ``bytes()``: how Python 3 writes bytes at protocol 2.

Anything else is refused. No array can be larger than the bytes it was read from (so a small
file cannot claim gigabytes), and no array can share memory with another.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, BinaryIO

import numpy as np

PLAIN_KINDS = "biuf"  # the numpy dtype kinds a stand-in builds: bool, int, uint, float


class _StandIn:
    """A global as the unpickler hands it out: callable, and closed to BUILD (which would
    otherwise set attributes, such as ``__defaults__``, on the function behind it)."""

    __slots__ = ("function",)

    def __init__(self, function: Any) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a pickle that sets the state of a global")


def _ndarray(*args: Any) -> None:
    """``numpy.ndarray`` called: it could view another array's memory (or none), so no."""
    raise pickle.UnpicklingError("numpy.ndarray called (only _reconstruct may name it)")


_NDARRAY = _StandIn(_ndarray)  # numpy.ndarray: only the first argument of _reconstruct


class _DType:
    """A stand-in for ``numpy.dtype(name, align, copy)``; BUILD sets the byte order."""

    __slots__ = ("name", "order")

    def __init__(self, name: Any, align: Any = False, copy: Any = True) -> None:
        del align, copy
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"a dtype named by {type(name).__name__}")
        self.name = name
        self.order = "="

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError(f"dtype {self.name!r} with the state {state!r}")
        self.order = state[1]

    def resolve(self) -> np.dtype:
        """The numpy dtype, if it is a plain number type."""
        try:
            dtype = np.dtype(self.name)
        except TypeError:
            raise pickle.UnpicklingError(f"unknown dtype {self.name!r}") from None
        if dtype.kind not in PLAIN_KINDS:
            raise pickle.UnpicklingError(f"dtype {self.name!r} is not a plain number type")
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


def _as_bytes(raw: Any) -> bytes:
    """An array's or a number's raw bytes: ``bytes``, a buffer, or a latin-1 ``str`` (how
    Python 2's strings read with ``encoding="latin1"``)."""
    if isinstance(raw, str):
        return raw.encode("latin1")
    if isinstance(raw, bytes | bytearray | pickle.PickleBuffer):
        return bytes(raw)
    raise pickle.UnpicklingError(f"array data of type {type(raw).__name__}")


def _array(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """A writable array of ``shape`` holding exactly the bytes ``raw``, sharing no memory."""
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError("an array without a dtype")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise pickle.UnpicklingError(f"an array of shape {shape!r}")
    numpy_dtype = dtype.resolve()
    data = _as_bytes(raw)
    if len(data) != math.prod(shape) * numpy_dtype.itemsize:
        raise pickle.UnpicklingError(f"an array of shape {shape} and dtype {numpy_dtype} with "
                                     f"{len(data)} bytes")
    return np.frombuffer(bytearray(data), numpy_dtype).reshape(shape, order=order)


class _Array:
    """An array being unpickled. ``_reconstruct(ndarray, shape, dtype)`` makes an empty one
    that the BUILD after it fills (numpy's ``__setstate__`` state), once; ``_frombuffer``
    (protocol 5) a filled one. No numpy object is on the unpickler's stack: :func:`load` swaps
    the arrays in at the end."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None) -> None:
        self.array = array

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise pickle.UnpicklingError("an array built twice")
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("an array state that is not numpy's")
        _, shape, dtype, fortran, raw = state
        self.array = _array(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _Array:
    """A stand-in for ``numpy.core.multiarray._reconstruct``."""
    del shape, typecode  # numpy's placeholders; the BUILD's state gives the real ones
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return _Array()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    """A stand-in for ``numpy.core.numeric._frombuffer`` (arrays at protocol 5)."""
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"an array in order {order!r}")
    return _Array(_array(buffer, dtype, shape, order))


def _scalar(dtype: Any, raw: Any) -> int | float | bool:
    """A stand-in for ``numpy.core.multiarray.scalar``: one number (a label saved by numpy),
    as a Python number."""
    return _array(raw, dtype, (), "C").item()


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """A stand-in for ``_codecs.encode``: latin-1 text only, as Python 3 pickles bytes."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    """A stand-in for ``bytes()``: how Python 3 pickles ``b""`` at protocol 2."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments")
    return b""


STAND_INS: dict[tuple[str, str], _StandIn] = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _StandIn(_reconstruct)
       for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _StandIn(_scalar) for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _StandIn(_frombuffer)
       for core in ("core", "_core")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _StandIn(_DType),
    ("_codecs", "encode"): _StandIn(_encode),
    ("__builtin__", "bytes"): _StandIn(_bytes),
    ("builtins", "bytes"): _StandIn(_bytes),
}  # fmt: skip


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return STAND_INS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file "
                                         "does not") from None


def _finish(value: Any, done: dict[int, Any] | None = None) -> Any:
    """Replace the array stand-ins in dicts and lists by their arrays.

    Each dict and list is copied once (``done``: copies by the id of the original), so shared
    ones stay shared and cycles stay cycles: a pickle whose lists each hold the one before it
    twice is a few bytes a level, and copying every path through it would take ``2**levels``
    lists.

    Args:
        value: What the unpickler built.
        done: The dicts and lists copied so far (None: a fresh walk).

    Returns:
        ``value`` with its arrays in place of their stand-ins.
    """
    if isinstance(value, _Array):
        if value.array is None:
            raise pickle.UnpicklingError("an array without its data")
        return value.array
    if not isinstance(value, dict | list):
        return value
    done = {} if done is None else done
    if id(value) in done:
        return done[id(value)]
    copy = done[id(value)] = type(value)()
    if isinstance(value, dict):
        copy.update((key, _finish(item, done)) for key, item in value.items())
    else:
        copy.extend(_finish(item, done) for item in value)
    return copy


def load(handle: BinaryIO) -> Any:
    """Read one pickle of plain data and numpy arrays from ``handle`` (see the module docs).

    Python 2's strings are read as latin-1 text, as the CIFAR release needs.

    Args:
        handle: A binary file.

    Returns:
        The unpickled value, its arrays as numpy arrays.

    Raises:
        Exception: Any error of a damaged or disallowed pickle (``pickle.UnpicklingError``
            for a global that is not allowed or an array that does not add up).
    """
    return _finish(_Unpickler(handle, encoding="latin1").load())
