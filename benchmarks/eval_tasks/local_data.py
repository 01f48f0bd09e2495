"""Loaders for the task YAMLs here (lm-eval's ``custom_dataset: !function``): the JSONL
files next to this module, whatever the working directory."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

_HERE = Path(__file__).resolve().parent


def _rows(name: str) -> list[dict]:
    with open(_HERE / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def multiple_choice(**_kwargs) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(_rows("mc.jsonl"))})


def capitals(**_kwargs) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(_rows("capitals.jsonl"))})
