"""Causal-LM text for the decoders: GPT-2 BPE ids, windows, fallbacks and errors."""

import shutil

import pytest
import torch

import tfnas.data.causal_text as ct
from tfnas.data.causal_text import CausalTextScoringData, gpt2_files


def test_gpt2_bpe_from_the_package_gives_gpt2_ids(data_dir):
    data = CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2")
    assert data.describe()["tokenizer"] == "gpt2"
    # GPT-2's ids: " the" 262, " cat" 3797, "<|endoftext|>" 50256
    assert data.tokenizer(" the cat")["input_ids"] == [262, 3797] and data.tokenizer.eos_token_id == 50256


def test_batches_are_consecutive_windows_of_the_stream(data_dir):
    data = CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2", batch_size=4, seq_len=16)
    stream = data.token_stream()
    b0, b1 = data.scoring_batch(0), data.scoring_batch(1)
    assert b0["input_ids"].shape == (4, 16) and b0["input_ids"].dtype == torch.long
    assert torch.equal(b0["labels"], b0["input_ids"])
    assert torch.equal(torch.cat([b0["input_ids"].reshape(-1), b1["input_ids"].reshape(-1)]), stream[:128])
    assert data.num_batches() == stream.numel() // 16 // 4
    with pytest.raises(IndexError, match="full batches"):
        data.scoring_batch(data.num_batches())
    with pytest.raises(IndexError):
        data.scoring_batch(-1)


def test_tokenizer_path_accepts_huggingface_file_names(data_dir, tmp_path):
    files = gpt2_files()
    shutil.copy(files["vocab_file"], tmp_path / "vocab.json")
    shutil.copy(files["merges_file"], tmp_path / "merges.txt")
    ours = CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2", tokenizer_path=tmp_path, batch_size=2, seq_len=8)
    pkg = CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2", batch_size=2, seq_len=8)
    assert torch.equal(ours.scoring_batch(3)["input_ids"], pkg.scoring_batch(3)["input_ids"])


def test_bert_fallback_and_errors(data_dir, tmp_path):
    auto = CausalTextScoringData(data_dir=data_dir, tokenizer_path=tmp_path)  # no GPT-2 files there
    assert auto.describe()["tokenizer"] == "bert-base-uncased"
    ids = auto.scoring_batch(0)["input_ids"]
    assert int(ids.max()) < 30522 and auto.tokenizer("the cat", add_special_tokens=False)["input_ids"] == [1996, 4937]
    with pytest.raises(FileNotFoundError, match="vocab.json and merges.txt"):
        CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2", tokenizer_path=tmp_path)
    with pytest.raises(ValueError, match="seq_len"):
        CausalTextScoringData(data_dir=data_dir, seq_len=1)
    with pytest.raises(ValueError, match="unknown tokenizer"):
        CausalTextScoringData(data_dir=data_dir, tokenizer="gpt3")
    with pytest.raises(FileNotFoundError, match="text file not found"):
        CausalTextScoringData(data_dir=data_dir, path=tmp_path / "none.txt").scoring_batch(0)


def test_any_text_file(data_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello world, this is a tiny corpus.\n" * 20)
    data = CausalTextScoringData(data_dir=data_dir, path=text, tokenizer="gpt2", batch_size=2, seq_len=5)
    assert data.describe()["path"] == "t.txt"  # by name: the folder is not part of the records' hash
    assert data.tokenizer.decode(data.scoring_batch(0)["input_ids"][0]) == "hello world, this is"


def test_wikitext103_source_through_datasets(data_dir, monkeypatch):
    import datasets

    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return {"text": [" = Valkyria = \n", " the cat sat on the mat .\n"] * 50}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ct._wikitext_text.cache_clear()
    data = CausalTextScoringData(data_dir=data_dir, source="wikitext103", tokenizer="gpt2", batch_size=2, seq_len=8)
    assert data.describe()["dataset"] == "wikitext/wikitext-103-raw-v1" and data.describe()["split"] == "test"
    assert data.scoring_batch(0)["input_ids"].shape == (2, 8) and calls == [("wikitext", "wikitext-103-raw-v1", "test")]

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    ct._wikitext_text.cache_clear()
    with pytest.raises(RuntimeError, match="offline, use source=file"):
        CausalTextScoringData(data_dir=data_dir, source="wikitext103", split="validation").scoring_batch(0)
    ct._wikitext_text.cache_clear()
