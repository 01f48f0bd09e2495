"""Hub ids: download a snapshot with huggingface_hub (tqdm progress), or say what to do.

A snapshot already in the local Hugging Face cache is used without touching the network.
"""

from __future__ import annotations

import os

from mlxserve.errors import ModelLoadError

_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.py",
    "*.jinja",
    "*.txt",
    "*.jsonl",
    "*.tiktoken",
    "tokenizer.model",
    "tiktoken.model",
]


def _offline_message(repo_id: str) -> str:
    return (
        f"model '{repo_id}' is not in the local Hugging Face cache and the hub cannot be "
        "reached (offline?); connect and retry, run `huggingface-cli download "
        f"{repo_id}` where there is network, or pass a local folder or .gguf file"
    )


def _download(repo_id: str, revision: str | None, local_only: bool) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        allow_patterns=_ALLOW_PATTERNS,
        local_files_only=local_only,
        # Read at call time (huggingface_hub reads it once, at import).
        cache_dir=os.environ.get("HF_HUB_CACHE") or None,
    )


def download_snapshot(repo_id: str, revision: str | None = None) -> str:
    """Local folder of ``repo_id`` at ``revision``: cached if present, else downloaded."""
    from huggingface_hub import errors

    try:
        return _download(repo_id, revision, local_only=True)
    except (errors.LocalEntryNotFoundError, errors.HFValidationError, FileNotFoundError):
        pass
    except OSError:
        pass
    try:
        return _download(repo_id, revision, local_only=False)
    except errors.GatedRepoError:
        raise ModelLoadError(
            f"model '{repo_id}' is gated on the hub: accept its license and log in "
            "(`huggingface-cli login`) first"
        ) from None
    except errors.RepositoryNotFoundError:
        raise ModelLoadError(
            f"model '{repo_id}' was not found on the Hugging Face hub (check the id, "
            "or log in if it is private)"
        ) from None
    except errors.RevisionNotFoundError:
        raise ModelLoadError(f"revision '{revision}' of model '{repo_id}' was not found") from None
    except errors.HFValidationError as e:
        raise ModelLoadError(f"'{repo_id}' is not a valid hub id: {e}") from None
    except (errors.LocalEntryNotFoundError, OSError, errors.HfHubHTTPError):
        raise ModelLoadError(_offline_message(repo_id)) from None


def require_config(folder: str, repo_id: str) -> str:
    """A hub snapshot must be in Hugging Face format; GGUF-only repos are loaded by file."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ModelLoadError(
            f"hub repo '{repo_id}' has no config.json (a GGUF-only repo?); download its .gguf "
            "file (`huggingface-cli download REPO FILE.gguf`) and pass the file path"
        )
    return folder
