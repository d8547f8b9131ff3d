"""What the command reads (frontends/data_file.py): bounded, and one line when it cannot.

Corrupt archives, binary data, endless streams and decompression bombs are
refused with one line on stderr and exit status 1, never a traceback and never
by reading until memory is gone.  Issue 15, class 8.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

import mixedmodels as mm
from mixedmodels.frontends import cli
from mixedmodels.frontends.data_file import parse_size

FORMULA = "Reaction ~ Days + (1 | Subject)"


@pytest.fixture(scope="module")
def csv_bytes() -> bytes:
    return mm.datasets.load("sleepstudy").to_csv(index=False).encode()


def _one_line_error(capsys, args: list[str]) -> str:
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("mixedmodels: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def _objective(capsys, args: list[str]) -> float:
    assert cli.main([*args, "--json"]) == 0, capsys.readouterr().err
    import json

    return json.loads(capsys.readouterr().out)["fit"]["objective"]


# -- the examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.csv.xz", b"\xfd7zXZ\x00" + b"garbage" * 20, "not valid xz data"),
        ("data.zip", b"PK\x03\x04" + b"garbage" * 20, "not valid zip data"),
        ("data.csv.gz", b"\x1f\x8b" + b"garbage" * 20, "not valid gz data"),
        ("data.csv.bz2", b"BZh9" + b"garbage" * 20, "not valid bz2 data"),
        ("data.tar", b"garbage" * 20, "not valid tar data"),
    ],
)
def test_corrupt_compressed_files_are_one_line(tmp_path, capsys, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    assert fragment in _one_line_error(capsys, ["fit", str(path), FORMULA])


def test_corrupt_zstd_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "data.csv.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 20)
    line = _one_line_error(capsys, ["fit", str(path), FORMULA])
    try:
        import zstandard  # noqa: F401
    except ImportError:
        assert "needs the zstandard package" in line
    else:
        assert "not valid zst data" in line


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_binary_device_is_refused_at_once(capsys, device):
    # fit /dev/zero read until memory was gone.
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    assert "binary data" in _one_line_error(capsys, ["fit", device, FORMULA])


def test_groups_with_a_space_is_quoted_into_the_formula(tmp_path, capsys):
    data = mm.datasets.load("sleepstudy").rename(columns={"Subject": "my group"})
    path = tmp_path / "spaced.csv"
    data.to_csv(path, index=False)
    assert cli.main(["fit", str(path), "Reaction ~ Days", "--groups", "my group"]) == 0
    out = capsys.readouterr().out
    assert "Formula: Reaction ~ Days + (1 | `my group`)" in out
    assert cli.with_groups("y ~ x", "2nd") == "y ~ x + (1 | `2nd`)"


# -- more of the kind ------------------------------------------------------------------------


class _Endless(io.RawIOBase):
    """A standard input that never ends (``yes 1,2 |``)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = (b"1,2\n" * (len(buffer) // 4 + 1))[: len(buffer)]
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_endless_standard_input_is_bounded(monkeypatch, capsys):
    stream = io.TextIOWrapper(io.BufferedReader(_Endless()))
    monkeypatch.setattr(sys, "stdin", stream)
    line = _one_line_error(capsys, ["fit", "-", "y ~ x + (1 | g)", "--max-bytes", "4M"])
    assert "more than 4 MiB" in line and "--max-bytes" in line


def test_decompression_bomb_is_bounded(tmp_path, capsys):
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"y,x\n" + b"1,2\n" * 2_000_000))  # 8 MB in ~10 kB
    line = _one_line_error(capsys, ["fit", str(path), "y ~ x + (1 | g)", "--max-bytes", "1M"])
    assert "more than 1 MiB once decompressed" in line


def test_compressed_csv_files_are_read(tmp_path, capsys, csv_bytes):
    plain = tmp_path / "sleep.csv"
    plain.write_bytes(csv_bytes)
    expected = _objective(capsys, ["fit", str(plain), FORMULA])
    (tmp_path / "sleep.csv.xz").write_bytes(lzma.compress(csv_bytes))
    (tmp_path / "sleep.csv.bz2").write_bytes(bz2.compress(csv_bytes))
    with zipfile.ZipFile(tmp_path / "sleep.zip", "w") as archive:
        archive.writestr("sleep.csv", csv_bytes)
    with tarfile.open(tmp_path / "sleep.tar.gz", "w:gz") as archive:
        archive.add(plain, arcname="sleep.csv")
    for name in ("sleep.csv.xz", "sleep.csv.bz2", "sleep.zip", "sleep.tar.gz"):
        assert _objective(capsys, ["fit", str(tmp_path / name), FORMULA]) == expected


def test_archive_of_several_files_is_refused(tmp_path, capsys, csv_bytes):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", csv_bytes)
        archive.writestr("b.csv", csv_bytes)
    assert "holds 2 files" in _one_line_error(capsys, ["fit", str(path), FORMULA])


def test_utf16_and_binary_files_are_refused(tmp_path, capsys, csv_bytes):
    utf16 = tmp_path / "wide.csv"
    utf16.write_bytes(csv_bytes.decode().encode("utf-16"))
    assert "UTF-16" in _one_line_error(capsys, ["fit", str(utf16), FORMULA])
    image = tmp_path / "image.csv"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    assert "binary data" in _one_line_error(capsys, ["fit", str(image), FORMULA])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_named_pipe_is_read_as_a_stream(tmp_path, capsys, csv_bytes):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as handle:
            handle.write(csv_bytes)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert _objective(capsys, ["fit", str(fifo), FORMULA]) > 0
    finally:
        writer.join(timeout=10)


def test_max_bytes_is_parsed_or_a_usage_error(capsys):
    assert parse_size("500M") == 500 * 1024**2
    assert parse_size("4GiB") == 4 * 1024**3
    assert parse_size("1000") == 1000
    for bad in ("lots", "-1M", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(SystemExit) as exited:
        cli.main(["fit", "sleepstudy", FORMULA, "--max-bytes", "lots"])
    assert exited.value.code == 2
    assert "not a size" in capsys.readouterr().err


def test_groups_with_a_backtick_is_refused(tmp_path, capsys):
    path = tmp_path / "ticked.csv"
    mm.datasets.load("sleepstudy").rename(columns={"Subject": "a`b"}).to_csv(path, index=False)
    line = _one_line_error(capsys, ["fit", str(path), "Reaction ~ Days", "--groups", "a`b"])
    assert "backtick" in line


def test_an_unexpected_exception_is_still_one_line(monkeypatch, capsys):
    def broken(*_args, **_kwargs):
        raise TypeError("something we did not foresee")

    monkeypatch.setattr(cli, "fit_model", broken)
    line = _one_line_error(capsys, ["fit", "sleepstudy", FORMULA])
    assert "internal error (TypeError: something we did not foresee)" in line
    monkeypatch.setenv("MIXEDMODELS_TRACEBACK", "1")
    with pytest.raises(TypeError):
        cli.main(["fit", "sleepstudy", FORMULA])
