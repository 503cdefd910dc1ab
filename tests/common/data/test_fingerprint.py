"""A pinned file: what is hashed is what is read, whatever happens to its name meanwhile. Readers
open it by a path with no suffix, so its format is always named."""
from __future__ import annotations

import hashlib
import os

import pytest

from common.data.corpus import CorpusSpec, read_corpus
from common.data.fingerprint import Fingerprint, PinnedFile
from common.errors import DataError


def test_the_fingerprint_is_the_files_size_and_sha256_read_in_blocks(tmp_path, monkeypatch):
    import common.data.fingerprint as fingerprint

    data = os.urandom(10_000)
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    monkeypatch.setattr(fingerprint, "BLOCK", 4096)
    with PinnedFile(path) as pinned:
        assert pinned.fingerprint() == Fingerprint(len(data), hashlib.sha256(data).hexdigest())


def test_readers_read_the_file_that_was_opened_after_its_name_is_swapped(tmp_path):
    path, other = tmp_path / "in.txt", tmp_path / "secret.txt"
    path.write_text("checked one\nchecked two\n")
    other.write_text("secret one\n")
    with PinnedFile(path) as pinned:
        before = pinned.fingerprint()
        os.replace(other, path)  # the name now holds other bytes
        assert [item.text for item in read_corpus(pinned.path, CorpusSpec(fmt="txt"))] == ["checked one", "checked two"]
        assert pinned.fingerprint() == before


def test_reader_errors_name_the_file_as_given(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": 1}\n')
    with PinnedFile(path) as pinned, pytest.raises(DataError, match=f"^{path}, line 1: field 'text' must be"):
        list(pinned.reading(read_corpus(pinned.path, CorpusSpec(fmt="jsonl"))))


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_only_a_regular_file_is_opened_and_never_blocks(tmp_path, kind):
    path = tmp_path / "source"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a blocking open would hang
    with pytest.raises(DataError, match=f"^{path}: (cannot open it|not a regular file)"):
        PinnedFile(path)
