"""GET /metrics: Prometheus text format through prometheus-client, vLLM's metric names
under the ``mlxserve:`` prefix (so vLLM dashboards work after a prefix swap).

Two sources, both public surfaces:
- per request (``ServerMetrics`` is the serving layer's ``RequestObserver``): tokens,
  success by finish reason, TTFT, inter-token latency, end-to-end latency, queue time,
  prompt/output lengths;
- the engine's ``stats()`` read at scrape time (``EngineStatsCollector``): running,
  waiting, KV-cache usage, and every other numeric field the engine reports (prefix-cache
  and speculative-decoding counters appear as the engine gains them).
Each app has its own registry (no process-global state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mlxserve.serving.telemetry import ChoiceRecord

PREFIX = "mlxserve:"
# vLLM's buckets, so its dashboards' heatmaps line up.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
               5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TOKEN_BUCKETS = tuple(m * 10 ** e for e in range(7) for m in (1, 2, 5))
# Engine stats fields with a vLLM name; other numeric fields become mlxserve:engine_<field>.
ENGINE_GAUGES = {"running": "num_requests_running", "waiting": "num_requests_waiting"}
ENGINE_COUNTERS = {"prefix_cache_queries": "prefix_cache_queries",
                   "prefix_cache_hits": "prefix_cache_hits",
                   "num_preemptions": "num_preemptions",
                   "spec_decode_num_drafts": "spec_decode_num_drafts",
                   "spec_decode_num_draft_tokens": "spec_decode_num_draft_tokens",
                   "spec_decode_num_accepted_tokens": "spec_decode_num_accepted_tokens"}

router = APIRouter()
disable_created_metrics()  # no *_created series (as vLLM); a process-wide exposition setting


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EngineStatsCollector:
    """Reads ``stats()`` (a dict, or None before the model is loaded) at every scrape."""

    def __init__(self, stats: Callable[[], dict[str, Any] | None],
                 model_name: Callable[[], str]):
        self._stats = stats
        self._model = model_name

    def _family(self, kind: type, name: str, doc: str, value: float) -> Metric:
        family = kind(PREFIX + name, doc, labels=["model_name"])
        family.add_metric([self._model()], value)
        return family

    def _kv_usage(self, stats: dict[str, Any]) -> Iterator[Metric]:
        used, total = stats.get("kv_tokens_used"), stats.get("kv_tokens_total")
        if _is_number(used) and _is_number(total):
            yield self._family(GaugeMetricFamily, "kv_cache_usage_perc",
                               "KV-cache usage (1 = full)", used / total if total else 0.0)

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if not stats:
            return
        yield from self._kv_usage(stats)
        for field, value in stats.items():
            if not _is_number(value):
                continue
            if field in ENGINE_GAUGES:
                yield self._family(GaugeMetricFamily, ENGINE_GAUGES[field],
                                   f"requests {field}", value)
            elif field in ENGINE_COUNTERS or field.startswith("total_"):
                name = ENGINE_COUNTERS.get(field, "engine_" + field.removeprefix("total_"))
                yield self._family(CounterMetricFamily, name, f"engine {field}", value)
            else:
                yield self._family(GaugeMetricFamily, "engine_" + field, f"engine {field}",
                                   value)


HISTOGRAMS = {  # attribute: (metric name, help, buckets)
    "ttft": ("time_to_first_token_seconds", "time to first token", TTFT_BUCKETS),
    "itl": ("inter_token_latency_seconds", "time between tokens", ITL_BUCKETS),
    "e2e": ("e2e_request_latency_seconds", "arrival to finish", LATENCY_BUCKETS),
    "queue": ("request_queue_time_seconds", "time spent waiting", LATENCY_BUCKETS),
    "prompt_len": ("request_prompt_tokens", "prompt length", TOKEN_BUCKETS),
    "output_len": ("request_generation_tokens", "output length", TOKEN_BUCKETS),
}


class ServerMetrics:
    """The registry behind /metrics; observes every choice the service runs. The
    ``model_name`` label is the served model name (/v1/models' first), set by
    ``serve_model`` once the model is loaded: nothing is observed before."""

    def __init__(self, stats: Callable[[], dict[str, Any] | None]):
        self.registry = CollectorRegistry()
        self.model_name = ""
        self._families = self._make_families()
        self.registry.register(EngineStatsCollector(stats, lambda: self.model_name))

    def _make_families(self) -> dict[str, Any]:
        r, labels = self.registry, ["model_name"]
        families = {
            "prompt_tokens": Counter(PREFIX + "prompt_tokens", "prefilled prompt tokens",
                                     labels, registry=r),
            "generation_tokens": Counter(PREFIX + "generation_tokens", "generated tokens",
                                         labels, registry=r)}
        for attribute, (name, doc, buckets) in HISTOGRAMS.items():
            families[attribute] = Histogram(PREFIX + name, doc, labels, buckets=buckets,
                                            registry=r)
        self.success = Counter(PREFIX + "request_success", "finished requests",
                               labels + ["finished_reason"], registry=r)
        self.failure = Counter(PREFIX + "request_failure",
                               "requests ended by an error, abort, timeout or disconnect",
                               labels + ["reason"], registry=r)
        return families

    def serve_model(self, model_name: str) -> None:
        """Label every series with ``model_name`` (the served name) from now on."""
        self.model_name = model_name
        for attribute, family in self._families.items():
            setattr(self, attribute, family.labels(model_name))

    def on_tokens(self, record: ChoiceRecord, gap_s: float | None, count: int) -> None:
        """``count`` tokens arrived in one delta (an engine step may hand over several):
        one inter-token latency per token after the first, as vLLM counts them."""
        self.generation_tokens.inc(count)
        if gap_s is None:
            self.prompt_tokens.inc(record.prompt_tokens)
            self.ttft.observe(record.ttft_s or 0.0)
            gap_s, count = 0.0, count - 1  # the first token's step-mates came with it
        for _ in range(count):
            self.itl.observe(gap_s / count)

    def on_finish(self, record: ChoiceRecord) -> None:
        if not record.succeeded:
            self.failure.labels(self.model_name, record.outcome).inc()
            return
        self.success.labels(self.model_name, record.outcome).inc()
        self.e2e.observe(record.e2e_s)
        self.prompt_len.observe(record.prompt_tokens)
        self.output_len.observe(record.completion_tokens)
        if record.queue_time_s is not None:
            self.queue.observe(record.queue_time_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@router.head("/metrics", include_in_schema=False)  # probes and checks send HEAD
@router.get("/metrics")
async def metrics(request: Request) -> Response:
    server_metrics: ServerMetrics = request.app.state.metrics
    return Response(server_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
