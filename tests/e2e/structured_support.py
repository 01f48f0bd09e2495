"""Helpers for the structured-output e2e tests: send the schema corpus concurrently (so the
server batches it) and check every answer against its schema with ``jsonschema``."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai

from structured_schemas import SCHEMAS

CORPUS_MAX_TOKENS = 96


def validate(schema: dict, text: str) -> None:
    """Parses as JSON and validates, formats (date, email, ipv4, uuid) included."""
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(json.loads(text))


def schema_format(schema: dict, name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                   "strict": True}}


async def _one_completion(client: openai.AsyncOpenAI, model: str, task: str, schema: dict,
                          name: str, temperature: float, seed: int):
    reply = await client.completions.create(
        model=model, prompt=f"A JSON object for {task}:\n", max_tokens=CORPUS_MAX_TOKENS,
        temperature=temperature, seed=seed, extra_body={"response_format":
                                                        schema_format(schema, name)})
    return reply.choices[0]


async def _corpus(base_url: str, model: str) -> list[tuple[str, dict, str, object]]:
    """Every schema greedy and sampled (temperature 1, seeded), all at once."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                  timeout=900) as client:
        jobs = [(mode, name, schema, _one_completion(client, model, task, schema, name,
                                                     0.0 if mode == "greedy" else 1.0, i))
                for mode in ("greedy", "sampled")
                for i, (name, task, schema) in enumerate(SCHEMAS)]
        choices = await asyncio.gather(*(job for *_, job in jobs))
    return [(f"{mode}/{name}", schema, choice.finish_reason, choice.text)
            for (mode, name, schema, _), choice in zip(jobs, choices)]


def run_corpus(base_url: str, model: str) -> list[str]:
    """Problems found (empty when every answer finished and validated)."""
    problems = []
    for label, schema, finish, text in asyncio.run(_corpus(base_url, model)):
        try:
            assert finish == "stop", f"finish_reason {finish}"
            validate(schema, text)
        except (AssertionError, ValueError, jsonschema.ValidationError) as e:
            problems.append(f"{label}: {str(e).splitlines()[0]} -- {text!r}")
    return problems
