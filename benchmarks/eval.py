"""Evaluate a running mlxserve with lm-eval (0.4.13) on the task set shipped in
benchmarks/eval_tasks/, offline.

    mlxserve serve smollm2-135m --port 8000 &
    python benchmarks/eval.py --base-url http://127.0.0.1:8000 --model smollm2-135m

lm-eval's ``local-completions`` client runs the multiple-choice task ``mlxserve_mc`` (each
choice scored with ``echo`` + ``logprobs``, i.e. prompt logprobs) and the generation task
``mlxserve_capitals``; its ``local-chat-completions`` client runs the generation task with
the model's chat template. Tokens come from the server's own ``/tokenize`` (lm-eval's
remote tokenizer), so no local tokenizer is needed. ``--tasks`` takes any lm-eval task
names (standard ones such as ``arc_easy`` need their datasets, i.e. network or a filled
Hugging Face cache). lm-eval is in the ``test`` extra (``pip install 'lm-eval[api]==0.4.13'``;
it does not pull torch).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "eval_tasks"
MULTIPLE_CHOICE_TASK = "mlxserve_mc"
GENERATION_TASK = "mlxserve_capitals"
_CLIENTS = {"completions": ("local-completions", "/v1/completions"),
            "chat": ("local-chat-completions", "/v1/chat/completions")}


def evaluate(base_url: str, model: str, api: str = "completions",
             tasks: tuple[str, ...] = (MULTIPLE_CHOICE_TASK, GENERATION_TASK),
             batch_size: int = 16, limit: int | None = None) -> dict:
    """lm-eval's results dict (``results``, ``samples`` per task) for one client."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    client, path = _CLIENTS[api]
    args = {"base_url": base_url.rstrip("/") + path, "model": model, "max_retries": 1,
            "timeout": 600}
    if api == "chat":  # lm-eval's chat client sends one request at a time
        batch_size = 1
    return simple_evaluate(model=client, model_args=args, tasks=list(tasks),
                           task_manager=TaskManager(include_path=str(TASKS_DIR)),
                           batch_size=batch_size, limit=limit, log_samples=True,
                           apply_chat_template=api == "chat")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="a model name the server accepts")
    p.add_argument("--api", choices=("completions", "chat", "both"), default="both")
    p.add_argument("--tasks", help="comma-separated lm-eval tasks (default: the shipped ones; "
                   "chat runs only generation tasks)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per completions request")
    p.add_argument("--limit", type=int, help="items per task")
    p.add_argument("--output", help="write the metrics as JSON here")
    return p.parse_args(argv)


def _tasks_for(api: str, requested: str | None) -> tuple[str, ...]:
    if requested:
        return tuple(t.strip() for t in requested.split(",") if t.strip())
    if api == "chat":  # lm-eval cannot score choices through chat completions
        return (GENERATION_TASK,)
    return (MULTIPLE_CHOICE_TASK, GENERATION_TASK)


def main(argv: list[str] | None = None) -> None:
    from lm_eval.utils import make_table

    args = _parse_args(argv)
    apis = ("completions", "chat") if args.api == "both" else (args.api,)
    metrics = {}
    for api in apis:
        started = time.perf_counter()
        results = evaluate(args.base_url, args.model, api, _tasks_for(api, args.tasks),
                           args.batch_size, args.limit)
        print(f"\n{_CLIENTS[api][0]} ({time.perf_counter() - started:.1f} s)")
        print(make_table(results))
        metrics[api] = results["results"]
    if args.output:
        Path(args.output).write_text(json.dumps(metrics, indent=2, default=str))


if __name__ == "__main__":
    main()
