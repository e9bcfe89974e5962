"""Damaged benchmark files give one line naming the file and what is wrong (built in tmp_path)."""

from __future__ import annotations

import json
import zipfile

import pytest

from synthetic import NLP_RECIPES, log_name, write_bert, write_nlp_zip
from tfnas.spaces.nasbench_bert.benchmark import load_benchmark
from tfnas.spaces.nasbench_nlp.benchmark import read_benchmark


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and exc.value.__cause__ is None and exc.value.__suppress_context__
    return msg


def test_intact_synthetic_archive_reads(tmp_path):
    archs = read_benchmark(write_nlp_zip(tmp_path / "logs.zip"))
    assert [a.benchmark_id for a in archs] == ["1000000", "1000001", "1000002"]
    assert [a.spec.to_dict() for a in archs] == NLP_RECIPES


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_zip_is_named_as_such_not_as_bad_json(tmp_path, keep):
    data = write_nlp_zip(tmp_path / "full.zip").read_bytes()
    cut = tmp_path / "train_logs_wikitext-2.zip"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError) as exc:
        read_benchmark(cut)
    msg = _one_line(exc)
    assert msg.startswith(f"{cut}: truncated or corrupt zip archive") and "JSON" not in msg


def test_truncated_zip_without_the_zip_suffix_is_still_read_as_a_zip(tmp_path):
    data = write_nlp_zip(tmp_path / "full.zip").read_bytes()
    cut = tmp_path / "logs.bin"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt zip archive"):
        read_benchmark(cut)


def test_file_named_zip_that_is_not_one(tmp_path):
    fake = tmp_path / "logs.zip"
    fake.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError) as exc:
        read_benchmark(fake)
    assert _one_line(exc) == f"{fake}: not a zip archive"


def test_member_failing_its_crc_check_is_named(tmp_path):
    path = write_nlp_zip(tmp_path / "logs.zip", compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    target = log_name(1_000_001, 999_000_001)
    # Flip one byte inside the stored JSON of the second member: its CRC-32 no longer matches.
    start = data.index(b'"recepie_id": 1000001')
    data[start + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as exc:
        read_benchmark(path)
    assert _one_line(exc) == (f"{path}: member logs/{target} fails its CRC check; the archive is corrupt, "
                              "download it again")


def test_member_that_cannot_be_decompressed_is_named(tmp_path):
    path = write_nlp_zip(tmp_path / "logs.zip")
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(path.read_bytes())
    data[offset : offset + 8] = b"\xff" * 8  # garbage at the start of the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as exc:
        read_benchmark(path)
    msg = _one_line(exc)
    assert msg.startswith(f"{path}: member {info.filename} ") and "download it again" in msg


def test_truncated_bert_benchmark_names_the_file(tmp_path):
    write_bert(tmp_path)
    path = tmp_path / "BERT_benchmark.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError) as exc:
        load_benchmark(path)
    assert _one_line(exc).startswith(f"{path}: not valid JSON (")
    json.loads(text)  # the intact file was valid
