"""Loading: the converted-GGUF cache (hashing, atomic folders, cache hits), and the memory check."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from workbench.errors import InsufficientMemory
from workbench.models import resolve_model
from workbench.models import loading
from workbench.models.loading import atomic_folder, check_memory, converted_dir, file_sha256
from workbench.paths import cache_dir


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "workbench"
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_file_hash_is_full_and_remembered_by_size_and_mtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"a" * 10_000_000 + b"tail")
    first = file_sha256(model)
    assert first == hashlib.sha256(model.read_bytes()).hexdigest()

    real_sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("hashed again"))
    assert file_sha256(model) == first  # remembered: same path, size and mtime
    monkeypatch.setattr(hashlib, "sha256", real_sha256)

    model.write_bytes(b"a" * 10_000_000 + b"TAIL")  # same size, a change only at the end
    assert file_sha256(model) == hashlib.sha256(model.read_bytes()).hexdigest() != first


def test_atomic_folder_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "converted" / "abc"
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("crash while saving")
    assert not target.exists()
    assert list((tmp_path / "converted").iterdir()) == []
    with atomic_folder(target) as folder:
        (folder / "config.json").write_text("{}")
    assert (target / "config.json").read_text() == "{}"


def test_memory_check_refuses_with_both_figures() -> None:
    entry = resolve_model("smollm2")
    with pytest.raises(InsufficientMemory) as caught:
        check_memory(entry, available=50 * 2**20)
    message = str(caught.value)
    assert "smollm2" in message and "0.05 GiB is available" in message
    estimate = check_memory(entry, available=64 * 2**30)
    assert f"{estimate.bytes_needed / 2**30:.2f} GiB" in message
    # 135M float32 parameters are 0.5 GiB; the estimate must cover at least that plus overhead
    assert 135e6 * 4 < estimate.bytes_needed < 4 * 2**30


def test_memory_check_on_the_encoder_counts_its_parameters() -> None:
    estimate = check_memory(resolve_model("minilm"), available=64 * 2**30)
    assert estimate.parameters == pytest.approx(22.7e6, rel=0.01)
    with pytest.raises(InsufficientMemory, match="minilm"):
        loading.load_encoder(resolve_model("minilm"), available_memory=10 * 2**20)


async def test_second_load_uses_the_cache_not_the_converter(
    smollm2_transformers: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared fixture has loaded SmolLM2, so its converted weights are in the cache now."""
    entry = resolve_model("smollm2")
    folder = converted_dir(entry)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}

    def no_conversion(*args: object) -> None:
        pytest.fail("converted the GGUF again despite the cache")

    monkeypatch.setattr(loading, "convert_gguf", no_conversion)
    progress: list[tuple[float, str]] = []
    loaded = loading.load_causal_lm(entry, lambda fraction, what: progress.append((fraction, what)))
    assert loaded.source == "cache"
    assert loaded.parameters == 134_515_008
    assert progress[0][0] == 0.0 and progress[-1] == (1.0, "ready")
    assert any(str(folder) in what for _, what in progress)


async def test_first_load_converts_into_a_fresh_cache_atomically(
    smollm2_transformers: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A first start on a machine: conversion with per-tensor progress, and the same weights as before."""
    import torch

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    entry = resolve_model("smollm2")
    progress: list[tuple[float, str]] = []
    loaded = loading.load_causal_lm(entry, lambda fraction, what: progress.append((fraction, what)))
    assert loaded.source == "converted"
    folder = converted_dir(entry)
    assert folder.parent == tmp_path / "converted"
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no partial folder left beside it
    assert any(what.startswith("converting tensor") for _, what in progress)
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    shared = smollm2_transformers.loaded.model  # type: ignore[attr-defined]
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260]])
    with torch.inference_mode():
        assert torch.equal(loaded.model(input_ids=ids).logits, shared(input_ids=ids).logits)
