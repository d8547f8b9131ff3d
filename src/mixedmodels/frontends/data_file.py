"""The table a command names, read with a bound on what is read.

A command's ``DATA`` argument is a path, ``-`` (standard input) or the name
of a bundled data set.  A path is read as Parquet (``.parquet``, ``.pq``) or
as CSV, decompressed first when its name says so (``.gz``, ``.bz2``, ``.xz``,
``.zip``, ``.zst``, ``.tar`` and ``.tar.*``).  Whatever cannot be read gives a
:class:`~mixedmodels.errors.CommandError` saying why, never a traceback:

- a file whose first bytes are binary (NUL bytes: an image, ``/dev/zero``,
  UTF-16 text) is refused at once;
- what comes from a stream (standard input, a pipe, a device) or out of a
  decompressor is read up to ``max_bytes`` (2 GiB by default) and refused
  beyond, so that an endless source (``yes |``, ``/dev/urandom``) or a
  decompression bomb cannot exhaust memory; an uncompressed regular file is
  read whole (its size is its own);
- a corrupt or truncated archive names the format it failed as.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from .. import datasets
from ..errors import CommandError

__all__ = ["DEFAULT_MAX_BYTES", "parse_size", "read_table"]

#: What is read at most from a stream or out of a decompressor, in bytes.
DEFAULT_MAX_BYTES = 2 * 1024**3
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CHUNK = 1024**2
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """A size such as ``500M``, ``4G`` or ``1000000`` (bytes), for ``--max-bytes``."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    number = value[: len(value) - len(unit)]
    try:
        size = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"not a size: {text!r} (write e.g. 500M or 4G)") from None
    if not size >= 1:
        raise ValueError(f"not a positive size: {text!r}")
    return int(size)


def _shown(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]} {unit}iB"
    return f"{size} bytes"


def read_table(
    source: str, stdin: IO[Any] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[pd.DataFrame, str]:
    """The table ``source`` names, and the name to show for it.

    Parameters
    ----------
    source : str
        A path, ``-`` for CSV on standard input, or the name of a bundled data
        set (when no such file exists).
    stdin : stream, optional
        Where ``-`` reads from (default :data:`sys.stdin`), bytes or text.
    max_bytes : int
        The bound on what is read from a stream or out of a decompressor.

    Raises
    ------
    CommandError
        Saying why the table cannot be read.
    """
    if source == "-":
        import sys

        stream = stdin if stdin is not None else sys.stdin
        stream = getattr(stream, "buffer", stream)
        raw = _read_bounded(stream, "standard input", max_bytes)
        if not raw.strip():
            raise CommandError("no data on standard input")
        return _parse_csv(raw, "standard input"), "stdin"
    path = Path(source)
    if not path.exists():
        if source.lower() in {n.lower() for n in datasets.names()}:
            return datasets.load(source), source
        raise CommandError(f"no such file: {source}")
    if path.is_dir():
        raise CommandError(f"{source} is a directory, not a data file")
    regular = stat.S_ISREG(path.stat().st_mode)
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        if not regular:
            raise CommandError(f"{source} is not a regular file: Parquet is read from files")
        return _read_parquet(path, source), path.name
    opener = _decompressor(path)
    if opener is not None:
        raw = _decompressed(path, source, opener, max_bytes)
    elif regular:
        with open(path, "rb") as handle:
            _check_text(handle.read(_CHUNK), source)
        return _parse_csv(path, source), path.name
    else:
        # A pipe or a device (/dev/zero, /dev/urandom): a stream without an end.
        with open(path, "rb") as handle:
            raw = _read_bounded(handle, source, max_bytes)
    return _parse_csv(raw, source), path.name


def _read_parquet(path: Path, label: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError as err:
        raise CommandError(
            "reading Parquet needs pyarrow: pip install 'mixedmodels[dask]' or pyarrow"
        ) from err
    except Exception as err:
        raise CommandError(f"cannot read {label} as Parquet: {_reason(err)}") from err


def _check_text(head: bytes, label: str) -> None:
    """Refuse binary data (a NUL byte in the first chunk) before reading more of it."""
    if b"\x00" in head:
        raise CommandError(
            f"cannot read {label} as CSV: it holds binary data (NUL bytes; UTF-16 text "
            "must be saved as UTF-8 first)"
        )


def _read_bounded(stream: IO[Any], label: str, max_bytes: int, what: str = "") -> bytes:
    """At most ``max_bytes`` of a stream (bytes or text), refusing more and binary data."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        if not chunks:
            _check_text(chunk, label)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise CommandError(
                f"{label} holds more than {_shown(max_bytes)}{what}: refused to bound the "
                "memory used; pass --max-bytes to raise the limit, or give a file"
            )
    return b"".join(chunks)


def _decompressor(path: Path) -> Callable[[Path], Any] | None:
    """How to open the file's one decompressed stream, from its name's suffixes."""
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return _tar_member
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open
    if suffix == ".bz2":
        return bz2.open
    if suffix in (".xz", ".lzma"):
        return lzma.open
    if suffix == ".zip":
        return _zip_member
    if suffix == ".zst":
        return _zstd_stream
    return None


def _decompressed(path: Path, label: str, opener: Callable[[Path], Any], max_bytes: int) -> bytes:
    kind = path.suffix.lower().lstrip(".")
    try:
        stream = opener(path)
        try:
            return _read_bounded(stream, label, max_bytes, " once decompressed")
        finally:
            stream.close()
    except CommandError:
        raise
    except Exception as err:  # each format has its own: LZMAError, BadZipFile, EOFError...
        raise CommandError(f"cannot read {label}: not valid {kind} data ({_reason(err)})") from err


def _zip_member(path: Path) -> IO[bytes]:
    archive = zipfile.ZipFile(path)
    files = [info for info in archive.infolist() if not info.is_dir()]
    if len(files) != 1:
        archive.close()
        raise CommandError(
            f"{path.name} holds {len(files)} files; a zip archive to read must hold one CSV file"
        )
    return archive.open(files[0])


def _tar_member(path: Path) -> IO[bytes]:
    archive = tarfile.open(path, mode="r:*")
    files = [member for member in archive.getmembers() if member.isfile()]
    if len(files) != 1:
        archive.close()
        raise CommandError(
            f"{path.name} holds {len(files)} files; a tar archive to read must hold one CSV file"
        )
    member = archive.extractfile(files[0])
    assert member is not None  # a regular file's member
    return member


def _zstd_stream(path: Path) -> IO[bytes]:
    try:
        from compression import zstd  # the standard library's, from Python 3.14

        return zstd.open(path, "rb")
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise CommandError(
            f"reading {path.name} needs the zstandard package (pip install zstandard), "
            "or decompress it first"
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)


def _parse_csv(source: bytes | Path, label: str) -> pd.DataFrame:
    if isinstance(source, bytes):
        _check_text(source[:_CHUNK], label)
        source = io.BytesIO(source)  # type: ignore[assignment]
    try:
        frame = pd.read_csv(source)
    except Exception as err:  # pandas' parser errors, encodings, a ragged file...
        raise CommandError(f"cannot read {label} as CSV: {_reason(err)}") from err
    if frame.shape[1] < 2:
        raise CommandError(f"{label} has {frame.shape[1]} column(s): is it really a CSV file?")
    return frame


def _reason(err: BaseException) -> str:
    """An exception on one line, its type named when its text is not enough alone."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
