"""Read MATLAB level-5 MAT-files, the format of ImageNet's devkit ``meta.mat``, without SciPy.

The format is MathWorks' "MAT-File Format" (level 5, which MATLAB's ``-v6`` and default ``-v7``
files use; ``-v7`` compresses each variable with zlib). A file is a 128-byte header (text,
version, an endian mark) and then one data element per variable; an element is a tag (type,
byte count) and its bytes, or a "small" element packing both into 8 bytes. A variable is an
``miMATRIX`` element holding, in order, the array flags (class), dimensions, name and data.

Only what a devkit holds is read: struct arrays, cell arrays, char arrays and real numeric
arrays. Values come back as plain Python: a struct array is a list of dicts (MATLAB's
column-major order), a cell array a list, a char array a string (a list of strings when it has
several rows), a numeric array a list of numbers (a bare number when it has one element) of its
class: floats for double and single arrays, however the file stores them.
Sparse, complex, object and function arrays, and ``-v7.3`` files (HDF5), are refused.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from reslab.errors import ReslabError

HEADER_SIZE = 128
# Element types (the format's miINT8 ... miUTF32) that hold numbers, as numpy dtype codes.
_NUMERIC_ELEMENT = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
                    12: "i8", 13: "u8"}  # fmt: skip
MI_INT8, MI_UINT8, MI_UINT16 = 1, 2, 4
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18
# Array classes (mxCELL_CLASS ...): cells, structs, chars; 6..15 are the numeric classes, as
# numpy dtype codes. MATLAB stores numbers in the smallest element type that holds them (a double
# array of small whole numbers as miUINT8): the class, not the element type, is the value's type.
MX_CELL, MX_STRUCT, MX_CHAR = 1, 2, 4
_NUMERIC_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
                    14: "i8", 15: "u8"}  # fmt: skip
_COMPLEX_FLAG = 0x0800


class _Elements:
    """The data elements of one buffer, read in order.

    Args:
        data: The bytes.
        order: ``"<"`` or ``">"``, the file's byte order.
        source: What to name in errors (the file, the variable).
        padded: Whether elements are padded to 8 bytes (inside a matrix); top-level elements
            follow each other directly (a compressed one has no padding).
    """

    def __init__(self, data: bytes, order: str, source: str, *, padded: bool) -> None:
        self.data, self.order, self.source, self.padded = data, order, source, padded
        self.pos = 0

    def more(self) -> bool:
        """Whether another element starts before the end of the buffer."""
        return self.pos < len(self.data)

    def _words(self, pos: int) -> tuple[int, int]:
        if pos + 8 > len(self.data):
            raise ReslabError(f"{self.source}: cut short (a data element's tag at byte {pos})")
        first, second = np.frombuffer(self.data, dtype=self.order + "u4", count=2, offset=pos)
        return int(first), int(second)

    def next(self) -> tuple[int, bytes]:
        """The next element's type and bytes.

        Raises:
            ReslabError: The buffer ends inside the element.
        """
        first, second = self._words(self.pos)
        if first >> 16:  # small element: byte count in the upper half, data in the next 4 bytes
            kind, size = first & 0xFFFF, first >> 16
            if size > 4:
                raise ReslabError(f"{self.source}: a small data element of {size} bytes")
            payload = self.data[self.pos + 4:self.pos + 4 + size]
            self.pos += 8
            return kind, payload
        kind, size, start = first, second, self.pos + 8
        if start + size > len(self.data):
            raise ReslabError(f"{self.source}: cut short (an element of {size} bytes at byte "
                              f"{self.pos} ends after the data)")  # fmt: skip
        self.pos = start + size
        if self.padded:
            self.pos += -size % 8
        return kind, self.data[start:start + size]

    def numbers(self, what: str) -> np.ndarray:
        """The next element as a 1-d numeric array.

        Args:
            what: The element's role, for errors (``"dimensions"``, ...).
        """
        kind, payload = self.next()
        if kind not in _NUMERIC_ELEMENT:
            raise ReslabError(f"{self.source}: {what} stored as element type {kind}, not numbers")
        dtype = np.dtype(_NUMERIC_ELEMENT[kind]).newbyteorder(self.order)
        if len(payload) % dtype.itemsize:
            raise ReslabError(f"{self.source}: {what}: {len(payload)} bytes is not a whole "
                              f"number of {dtype.itemsize}-byte values")  # fmt: skip
        return np.frombuffer(payload, dtype=dtype)


def _text(kind: int, payload: bytes, order: str, source: str) -> str:
    """Decode a char array's data element (MATLAB writes UTF-8, or UTF-16 code units)."""
    endian = "le" if order == "<" else "be"
    codecs = {MI_UTF8: "utf-8", MI_UINT8: "latin-1", MI_INT8: "latin-1",
              MI_UINT16: f"utf-16-{endian}", MI_UTF16: f"utf-16-{endian}",
              MI_UTF32: f"utf-32-{endian}"}  # fmt: skip
    if kind not in codecs:
        raise ReslabError(f"{source}: char data stored as element type {kind}")
    try:
        return payload.decode(codecs[kind])
    except UnicodeDecodeError as exc:
        raise ReslabError(f"{source}: char data is not valid {codecs[kind]} ({exc})") from None


def _char_array(text: str, dims: tuple[int, ...]) -> str | list[str]:
    """A char array's text as one string (one row) or its rows (stored column-major)."""
    rows = dims[0] if dims else 0
    if rows <= 1:
        return text
    columns = len(text) // rows
    return ["".join(text[row + rows * column] for column in range(columns))
            for row in range(rows)]  # fmt: skip


def _matrix(payload: bytes, order: str, source: str) -> object:
    """The value of one ``miMATRIX`` element's bytes (see the module docstring)."""
    if not payload:  # MATLAB writes an empty array as an element of no bytes
        return []
    parts = _Elements(payload, order, source, padded=True)
    flags = parts.numbers("array flags")
    if flags.size < 1:
        raise ReslabError(f"{source}: array flags missing")
    array_class = int(flags[0]) & 0xFF
    dims = tuple(int(d) for d in parts.numbers("dimensions"))
    _, name = parts.next()
    source = f"{source}/{name.decode('latin-1')}" if name else source
    count = math.prod(dims)
    if array_class == MX_CELL:
        return [_next_matrix(parts, order, source) for _ in range(count)]
    if array_class == MX_STRUCT:
        width = parts.numbers("field name length")
        _, names = parts.next()
        if width.size != 1 or width[0] <= 0 or len(names) % int(width[0]):
            raise ReslabError(f"{source}: field names do not fit their length")
        step = int(width[0])
        fields = _unique([names[i:i + step].split(b"\0", 1)[0].decode("latin-1")
                          for i in range(0, len(names), step)])  # fmt: skip
        return [{field: _next_matrix(parts, order, f"{source}.{field}") for field in fields}
                for _ in range(count)]  # fmt: skip
    if array_class == MX_CHAR:
        if count == 0:
            return ""
        kind, data = parts.next()  # fewer characters than the dimensions: blanks, as SciPy
        return _char_array(_text(kind, data, order, source).ljust(count), dims)
    if array_class in _NUMERIC_CLASSES:
        if int(flags[0]) & _COMPLEX_FLAG:
            raise ReslabError(f"{source}: complex numbers are not read")
        values = parts.numbers("numeric data")
        if values.size != count:
            raise ReslabError(f"{source}: {values.size} values for dimensions {dims}")
        numbers = values.astype(_NUMERIC_CLASSES[array_class]).tolist()
        return numbers[0] if count == 1 else numbers
    raise ReslabError(f"{source}: array class {array_class} is not read (only cell, struct, "
                      "char and numeric arrays are)")  # fmt: skip


def _unique(fields: list[str]) -> list[str]:
    """Field names made unique as SciPy makes them: a name truncated to the same text as an
    earlier one (MATLAB cuts long names) becomes ``_1_<name>``, ``_2_<name>``, ..."""
    seen: dict[str, int] = {}
    unique = []
    for field in fields:
        repeats = seen.get(field, 0)
        seen[field] = repeats + 1
        unique.append(f"_{repeats}_{field}" if repeats else field)
    return unique


def _next_matrix(parts: _Elements, order: str, source: str) -> object:
    kind, payload = parts.next()
    if kind != MI_MATRIX:
        raise ReslabError(f"{source}: element type {kind} where an array was expected")
    return _matrix(payload, order, source)


def loadmat(path: str | Path) -> dict[str, object]:
    """Read the variables of a level-5 MAT-file.

    Args:
        path: The ``.mat`` file.

    Returns:
        Variable name to value (see the module docstring for how values are represented).

    Raises:
        ReslabError: Not a level-5 MAT-file (a ``-v7.3`` HDF5 file included), a damaged or
            cut file, or an array kind that is not read; the message names the file and the
            variable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReslabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse(data, str(path))


def parse(data: bytes, source: str) -> dict[str, object]:
    """:func:`loadmat` for bytes already read (e.g. a member of a devkit archive).

    Args:
        data: The file's bytes.
        source: The name to use in errors.

    Returns:
        Variable name to value.

    Raises:
        ReslabError: As for :func:`loadmat`.
    """
    if len(data) < HEADER_SIZE or not data.startswith(b"MATLAB"):
        raise ReslabError(f"{source}: not a MAT-file (no 'MATLAB' header)")
    marks = {b"IM": "<", b"MI": ">"}
    order = marks.get(data[126:128])
    version = data[124:126] if order == ">" else data[125:123:-1]  # big-endian bytes
    if data.startswith(b"MATLAB 7.3") or version == b"\x02\x00":
        raise ReslabError(f"{source}: a MATLAB 7.3 (HDF5) MAT-file; save it with -v7 to be read")
    if order is None or version != b"\x01\x00":
        raise ReslabError(f"{source}: not a level-5 MAT-file (version {version.hex()}, endian "
                          f"mark {data[126:128]!r})")  # fmt: skip
    variables: dict[str, object] = {}
    elements = _Elements(data[HEADER_SIZE:], order, source, padded=False)
    while elements.more():
        kind, payload = elements.next()
        if kind == MI_COMPRESSED:
            try:
                payload = zlib.decompress(payload)
            except zlib.error as exc:
                raise ReslabError(f"{source}: a compressed variable is damaged ({exc})") from None
            kind, payload = _Elements(payload, order, source, padded=True).next()
        if kind != MI_MATRIX:
            raise ReslabError(f"{source}: element type {kind} at the top level, not an array")
        name = _variable_name(payload, order, source)
        variables[name] = _matrix(payload, order, source)
    return variables


def _variable_name(payload: bytes, order: str, source: str) -> str:
    """The name stored in a top-level ``miMATRIX`` element (its third sub-element)."""
    parts = _Elements(payload, order, source, padded=True)
    parts.next()  # array flags
    parts.next()  # dimensions
    _, name = parts.next()
    return name.decode("latin-1")
