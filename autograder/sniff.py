"""What a submitted file is, before anyone parses it: read it safely, tell text from the rest.

A participant's file may be missing, a folder, a link, a pipe, huge, gzip-compressed, a zip
(an Excel ``.xlsx``, a Keras ``.keras``), UTF-16 from Excel or PowerShell, or some other binary.
Each case gets one plain message, so a report never shows a flood of per-line errors for a file
that was not text in the first place. Problems are ``(rule, message)`` pairs; the rule names
are those of :data:`autograder.csvrules.RULES`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

#: How much of the file is looked at to tell text from binary data.
SNIFF_BYTES = 4096
#: The fix every "not text" message ends with.
FIX = "save the predictions as a plain UTF-8 CSV file, e.g. df.to_csv(path, index=False)"

UTF8_BOM = b"\xef\xbb\xbf"
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
#: Binary formats a participant may save by mistake, named so the message can say which.
_BINARY_MAGIC = (
    (b"\x89HDF", "an HDF5 file (a Keras .h5 model?)"),
    (b"\x93NUMPY", "a NumPy .npy array (np.save)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls or another Office file"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")

Problem = tuple[str, str]


def human_size(size: int) -> str:
    """``1.7 MB``, ``12.0 kB``, ``300 bytes``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def read_capped(path: Path, *, limit: int) -> bytes | Problem:
    """The file's bytes, or (rule, message) when it cannot or should not be read.

    A symbolic link is refused rather than followed (a submission could point it at a file
    only the grader may read); a pipe or a device is never read, so nothing blocks; no more
    than ``limit`` bytes are ever read, even from a file that grows meanwhile.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            return "not-a-file", "the file is a symbolic link to nothing; submit the file itself"
        return "missing", "the file does not exist; check its name and the folder it is in"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "not-a-file", "the file is a symbolic link; submit the file itself"
        if exc.errno == errno.EISDIR:
            return "not-a-file", "this is a folder, not a file; give the CSV file inside it"
        return "unreadable", f"the file cannot be opened ({exc.strerror}); check its permissions"
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return "not-a-file", "this is a folder, not a file; give the CSV file inside it"
        if not stat.S_ISREG(info.st_mode):
            return "not-a-file", "this is not a regular file (a pipe or a device); give a CSV file"
        if info.st_size > limit:
            return "too-large", _too_large(info.st_size, limit)
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            return "too-large", _too_large(got, limit)
        return b"".join(chunks)
    except OSError as exc:
        return "unreadable", f"the file cannot be read ({exc.strerror}); check its permissions"
    finally:
        os.close(fd)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the file is {human_size(size)} or more, far more than this competition's rows can "
        f"need (the cap is {human_size(limit)}); is it the right file?"
    )


def sniff(data: bytes) -> Problem | None:
    """(rule, message) for bytes that are not UTF-8 text at all (gzip, zip, UTF-16/32, other
    binary), else None. Only the first :data:`SNIFF_BYTES` are looked at."""
    head = data[:SNIFF_BYTES]
    if head.startswith(b"\x1f\x8b"):
        return "gzip", f"the file is gzip-compressed, not plain text; decompress it, or {FIX}"
    if head.startswith(_ZIP_MAGIC):
        return "zip", (
            "the file is a zip archive (an Excel .xlsx or a Keras .keras file is one too), "
            f"not plain text; {FIX}"
        )
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            return "utf16", _wide_text(encoding)
    if b"\x00" in head:
        return ("utf16", _wide_text("UTF-16")) if _looks_utf16(head) else ("binary", _binary(head))
    text = head.decode("utf-8", "replace")
    if head.startswith(tuple(m for m, _ in _BINARY_MAGIC)) or (
        len(_CONTROL.findall(text)) * 10 > len(text)
    ):
        return "binary", _binary(head)
    return None


def _looks_utf16(head: bytes) -> bool:
    """ASCII text in UTF-16 has a NUL in every other byte, and only there."""
    even, odd = head[0::2], head[1::2]
    return any(
        zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) <= 0.1 * len(chars)
        for zeros, chars in ((odd, even), (even, odd))
    )


def _wide_text(encoding: str) -> str:
    return (
        f"the file is {encoding} text (as Excel's 'Unicode Text' or PowerShell's > write it), "
        f"not UTF-8; {FIX}"
    )


def _binary(head: bytes) -> str:
    kind = next((name for magic, name in _BINARY_MAGIC if head.startswith(magic)), None)
    what = f"it looks like {kind}" if kind else f"it starts with bytes {head[:4].hex(' ')}"
    return f"the file is binary data, not CSV text ({what}); {FIX}"
