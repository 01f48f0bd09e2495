"""The protocol-neutral request path: ChatInput / CompletionInput → GenerateRequest(s) →
engine → MessageDelta streams. The API layer only encodes what comes out of here.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from mlxserve.engine.request import FINISH_ABORT, FINISH_ERROR, GenerateRequest, MultimodalInputs
from mlxserve.errors import InvalidRequest, RequestTimedOut
from mlxserve.extras import vision_extra_missing_reason
from mlxserve.multimodal.media_config import MediaConfig
from mlxserve.serving import telemetry
from mlxserve.serving.assembler import MessageDelta, OutputAssembler
from mlxserve.serving.chat_input import ChatInput, CompletionInput, GenerationOptions
from mlxserve.structured.constraint import GrammarConstraint
from mlxserve.structured.spec import StructuredOutput
from mlxserve.serving.deadlines import request_deadline, until_deadline
from mlxserve.serving.limits import (RequestLimits, check_chat_limits, check_option_limits,
                                     check_total_tokens)
from mlxserve.serving.media import (MediaRef, MediaRequestOptions, arrange_for_model,
                                    check_media_limits, extract_media, load_media)
from mlxserve.serving.messages import normalize_messages
from mlxserve.serving.params import (ContextLimits, check_n, choice_sampling, resolve_sampling,
                                     resolve_stop)
from mlxserve.serving.parser_setup import (ParserSettings, ToolSetup, hidden_special_ids,
                                           make_output_parser, plan_tools, reasoning_end_tag)
from mlxserve.serving.thinking_budget import BudgetedStream, ThinkingBudget
from mlxserve.serving.structured_setup import (GrammarCompiler, check_one_source,
                                               forced_tool_call)
from mlxserve.serving.prompt import (
    decode_tokens, encode_prompt_text, merge_template_kwargs, render_chat_prompt,
)


@dataclass(frozen=True)
class ServingSettings:
    limits: ContextLimits
    max_n: int = 8
    chat_template: str | None = None  # template text overriding the model's
    default_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    parsers: ParserSettings = field(default_factory=ParserSettings)
    media: MediaConfig = field(default_factory=MediaConfig)  # limits for image/video parts
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    request_timeout_s: float | None = None  # deadline of every request (None: none)
    sampling_defaults: dict[str, Any] = field(default_factory=dict)  # for omitted fields


@dataclass
class PreparedPrompt:
    """One prompt, tokenized and checked, with one GenerateRequest per choice."""

    token_ids: list[int]
    text: str
    requests: list[GenerateRequest]
    tool_setup: ToolSetup | None = None
    prompt_opens_reasoning: bool = False
    score_only: bool = False  # max_tokens 0: the one token the engine generates is dropped
    arrival: float = field(default_factory=time.monotonic)  # when the HTTP request came
    deadline: float | None = None  # time.monotonic() past which it fails (408)
    thinking_budget: ThinkingBudget | None = None  # reasoning closed after this many tokens


def _media_refused(ref: MediaRef) -> InvalidRequest:
    """The 400 for a media part sent to a text model; names the extra when it is missing."""
    reason = vision_extra_missing_reason()
    if reason is None:
        return InvalidRequest(f"{ref.part}: this model does not accept {ref.kind} input",
                              param="messages")
    return InvalidRequest(f"{ref.part}: this server cannot read {ref.kind} input: {reason}, "
                          "and serve a vision-language model", param="messages",
                          code="vision_extra_not_installed")


class GenerationService:
    def __init__(self, engine: Any, settings: ServingSettings,
                 observer: telemetry.RequestObserver | None = None):
        self._engine = engine
        self.settings = settings
        self._observer = observer  # told each choice's tokens and end (metrics)
        self._running: set[str] = set()  # ids of the engine requests being streamed
        self._grammars: GrammarCompiler | None = None  # made on the first structured request
        self._hidden: frozenset[int] | None = None  # special tokens kept out of the text

    @property
    def tokenizer(self) -> Any:
        return self._engine.model.tokenizer

    def _vocab_size(self) -> int | None:
        return self._engine.model.capabilities.vocab_size or None

    def _hidden_ids(self) -> frozenset[int]:
        if self._hidden is None:
            self._hidden = hidden_special_ids(self.tokenizer, self.settings.parsers)
        return self._hidden

    def _compiler(self) -> GrammarCompiler:
        if self._grammars is None:
            self._grammars = GrammarCompiler(self._engine.model)
        return self._grammars

    async def _constraint(self, spec: StructuredOutput | None) -> GrammarConstraint | None:
        """The compiled grammar of a request (400 when it is invalid), or None."""
        if spec is None:
            return None
        return await asyncio.to_thread(self._compiler().compile, spec)

    async def _chat_constraint(self, chat: ChatInput, tool_setup: ToolSetup
                               ) -> GrammarConstraint | None:
        forced = forced_tool_call(chat.tool_choice, tool_setup.parser_tools,
                                  self.settings.parsers.tool_call_parser,
                                  chat.parallel_tool_calls)
        check_one_source(chat.options.structured, forced)
        if forced is not None:
            return await asyncio.to_thread(self._compiler().compile_tool_call, forced)
        return await self._constraint(chat.options.structured)

    def _requests(self, base_id: str, first_index: int, n: int, prompt: list[int],
                  options: GenerationOptions, multimodal: MultimodalInputs | None = None,
                  constraint: GrammarConstraint | None = None) -> list[GenerateRequest]:
        sampling = resolve_sampling(options, self.settings.sampling_defaults)
        stop = resolve_stop(options, len(prompt), self.settings.limits)
        requests = []
        for i in range(n):
            req = GenerateRequest(f"{base_id}-{first_index + i}", list(prompt),
                                  choice_sampling(sampling, i), stop, multimodal,
                                  prompt_logprobs=options.prompt_logprobs,
                                  specprefill=options.specprefill,
                                  speculative=options.speculative,
                                  constraint=constraint.fork() if constraint else None,
                                  hidden_token_ids=self._hidden_ids()
                                  if options.skip_special_tokens else frozenset())
            check = getattr(self._engine, "check", None)
            if check is not None:
                check(req)  # the engine's own validation, scheduler limits included
            else:
                req.validate(self._vocab_size(), self.settings.limits.context_length)
            requests.append(req)
        return requests

    def _reasoning_kwargs(self, chat: ChatInput) -> dict[str, Any]:
        """The request's reasoning switches, for the templates that take them."""
        capabilities = self._engine.model.capabilities
        kwargs: dict[str, Any] = {}
        if chat.thinking is not None and capabilities.template_has_thinking:
            kwargs["enable_thinking"] = chat.thinking
        if chat.reasoning_effort is not None and getattr(
                capabilities, "template_has_reasoning_effort", False):
            kwargs["reasoning_effort"] = chat.reasoning_effort
        return kwargs

    def _render_chat(self, messages: list, chat: ChatInput,
                     template_tools: list[dict] | None) -> str:
        messages = normalize_messages(messages)
        defaults = {**self.settings.default_chat_template_kwargs, **self._reasoning_kwargs(chat)}
        kwargs = merge_template_kwargs(defaults, chat.chat_template_kwargs)
        return render_chat_prompt(self.tokenizer, messages, template_tools, kwargs,
                                  self.settings.chat_template)

    def _opens_reasoning(self, prompt_text: str) -> bool:
        opener = getattr(self.tokenizer, "think_start", None)
        return bool(opener) and prompt_text.rstrip().endswith(opener)

    def _check_output_budget(self, prompts: list[PreparedPrompt]) -> None:
        requests = [r for p in prompts for r in p.requests]
        check_total_tokens(len(requests), max(r.stop.max_tokens for r in requests),
                           self.settings.request_limits)

    @staticmethod
    def _note_prompt(prepared: PreparedPrompt) -> PreparedPrompt:
        http = telemetry.current_http.get()
        if http is not None:
            http.add_prompt(len(prepared.token_ids), prepared.text)
        return prepared

    async def prepare_chat(self, chat: ChatInput, base_id: str) -> PreparedPrompt:
        arrival = telemetry.arrival_time()
        check_n(chat.n, self.settings.max_n)
        check_chat_limits(chat, self.settings.request_limits)
        deadline = request_deadline(chat.options.timeout, self.settings.request_timeout_s,
                                    arrival)
        ids, text, multimodal, tool_setup = await self._chat_prompt(chat)
        constraint = await self._chat_constraint(chat, tool_setup)
        requests = self._requests(base_id, 0, chat.n, ids, chat.options, multimodal,
                                  constraint)
        for other in requests[1:]:  # a chat reply carries its prompt's logprobs once
            other.prompt_logprobs = None
        prepared = PreparedPrompt(ids, text, requests, tool_setup, self._opens_reasoning(text),
                                  arrival=arrival, deadline=deadline,
                                  thinking_budget=self._thinking_budget(chat, constraint))
        self._check_output_budget([prepared])
        return self._note_prompt(prepared)

    def _thinking_budget(self, chat: ChatInput, constraint: GrammarConstraint | None
                         ) -> ThinkingBudget | None:
        """The request's thinking budget, where the reasoning parser closes reasoning with
        a tag (a grammar-constrained answer keeps its one request: no budget)."""
        end_tag = reasoning_end_tag(self.settings.parsers)
        if chat.thinking_budget_tokens is None or end_tag is None or constraint is not None:
            return None
        return ThinkingBudget(chat.thinking_budget_tokens, end_tag)

    def _engine_deltas(self, request: GenerateRequest, prepared: PreparedPrompt
                       ) -> AsyncIterator[Any]:
        if prepared.thinking_budget is None:
            return self._engine.generate(request)
        budgeted = BudgetedStream(self._engine, self.tokenizer, prepared.thinking_budget,
                                  on_request=self._running.add)
        return budgeted.deltas(request)

    async def count_chat_tokens(self, chat: ChatInput) -> int:
        """The prompt tokens the engine would see for ``chat`` (media tokens included)."""
        ids, _, _, _ = await self._chat_prompt(chat)
        return len(ids)

    async def chat_prompt(self, chat: ChatInput
                          ) -> tuple[list[int], str, MultimodalInputs | None, ToolSetup]:
        """The templated, tokenized prompt of ``chat`` (warm prompts render through it)."""
        return await self._chat_prompt(chat)

    async def _chat_prompt(self, chat: ChatInput
                           ) -> tuple[list[int], str, MultimodalInputs | None, ToolSetup]:
        """The templated, tokenized prompt of ``chat`` and its media inputs."""
        tool_setup = plan_tools(chat.tools, chat.tool_choice, self.settings.parsers,
                                chat.parallel_tool_calls)
        messages, media = extract_media(chat.messages)
        vision = getattr(self._engine.model, "vision", None)
        if media and vision is None:
            raise _media_refused(media[0])
        check_media_limits(media, self.settings.media)
        images: list = []
        videos: list = []
        if media:
            options = MediaRequestOptions(chat.video_fps, chat.video_max_frames)
            decoded = await asyncio.to_thread(load_media, media, options, self.settings.media)
            messages, images, videos = arrange_for_model(messages, decoded,
                                                         vision.native_video)
        text = await asyncio.to_thread(self._render_chat, messages, chat,
                                       tool_setup.template_tools)
        ids = await asyncio.to_thread(encode_prompt_text, self.tokenizer, text,
                                      add_special_tokens=False, param="messages")
        multimodal = None
        if media:
            ids, multimodal = await asyncio.to_thread(self._prepare_media, ids, images,
                                                      videos, vision)
        return ids, text, multimodal, tool_setup

    def _prepare_media(self, ids: list[int], images: list, videos: list, vision: Any
                       ) -> tuple[list[int], MultimodalInputs]:
        """Preprocess the decoded media; expand the prompt's placeholders."""
        from mlxserve.multimodal.encode import embedding_cache_for, prepare_multimodal

        cache = embedding_cache_for(vision, self.settings.media.embedding_cache_entries)
        prepared = prepare_multimodal(ids, images, videos, vision, cache=cache)
        return prepared.prompt_tokens, prepared.multimodal

    def _tokenize_completion_prompt(self, prompt: str | list[int]) -> tuple[list[int], str]:
        if isinstance(prompt, str):
            return encode_prompt_text(self.tokenizer, prompt, add_special_tokens=True), prompt
        ids = list(prompt)
        vocab_size = self._vocab_size()
        if any(t < 0 or (vocab_size is not None and t >= vocab_size) for t in ids):
            # checked before decoding: the tokenizer raises on ids that do not fit its type
            raise InvalidRequest("the prompt has token ids outside the vocabulary",
                                 param="prompt")
        return ids, decode_tokens(self.tokenizer, ids)

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return encode_prompt_text(self.tokenizer, text, add_special_tokens=add_special_tokens)

    def detokenize(self, token_ids: list[int]) -> str:
        return self._tokenize_completion_prompt(token_ids)[1]  # ids checked first

    def tokenizer_info(self) -> dict[str, Any]:
        """The special tokens and chat template (vLLM's /tokenizer_info fields)."""
        tok = self.tokenizer
        template = self.settings.chat_template or getattr(tok, "chat_template", None)
        info = {name: getattr(tok, name, None)
                for name in ("eos_token", "bos_token", "pad_token", "unk_token")}
        info.update(tokenizer_class=type(getattr(tok, "_tokenizer", tok)).__name__,
                    chat_template=template if isinstance(template, str) else None,
                    model_max_length=self.settings.limits.context_length)
        return info

    async def prepare_completions(self, completion: CompletionInput, base_id: str
                                  ) -> list[PreparedPrompt]:
        arrival = telemetry.arrival_time()
        check_n(completion.n, self.settings.max_n)
        check_option_limits(completion.options, self.settings.request_limits)
        deadline = request_deadline(completion.options.timeout,
                                    self.settings.request_timeout_s, arrival)
        if not completion.prompts:
            raise InvalidRequest("'prompt' must not be empty", param="prompt")
        if len(completion.prompts) * completion.n > 64:
            raise InvalidRequest("too many prompts times 'n' (at most 64 in one request)",
                                 param="prompt")
        options = completion.options
        if completion.score_only:  # the engine always samples after the prefill
            if not completion.echo:
                raise InvalidRequest("'max_tokens' must be at least 1 (0 only with 'echo', "
                                     "to score the prompt)", param="max_tokens")
            options = replace(options, max_tokens=1)
        constraint = await self._constraint(options.structured)
        prepared = []
        for i, prompt in enumerate(completion.prompts):
            ids, text = await asyncio.to_thread(self._tokenize_completion_prompt, prompt)
            requests = self._requests(base_id, i * completion.n, completion.n, ids, options,
                                      constraint=constraint)
            prepared.append(PreparedPrompt(ids, text, requests, score_only=completion.score_only,
                                           arrival=arrival, deadline=deadline))
        self._check_output_budget(prepared)
        return [self._note_prompt(p) for p in prepared]

    async def _abort(self, request_id: str) -> None:
        result = self._engine.abort(request_id)
        if inspect.isawaitable(result):
            await result

    def abort_running(self) -> None:
        """Abort every request being streamed (server shutdown): each ends promptly with
        the "aborted by the server" error instead of holding its connection open."""
        for request_id in list(self._running):
            result = self._engine.abort(request_id)
            if inspect.isawaitable(result):
                asyncio.ensure_future(result)

    async def stream(self, request: GenerateRequest, prepared: PreparedPrompt
                     ) -> AsyncIterator[MessageDelta]:
        """MessageDelta objects of one engine request; aborts it if the consumer leaves,
        it fails or it runs past its deadline (then RequestTimedOut, a 408)."""
        parser = make_output_parser(self.settings.parsers, prepared.tool_setup,
                                    prepared.prompt_opens_reasoning)
        assembler = OutputAssembler(parser)
        deltas = self._engine_deltas(request, prepared)
        record = telemetry.ChoiceRecord(prepared.arrival, len(request.prompt_tokens))
        finished = False
        self._running.add(request.request_id)
        try:
            async for delta in until_deadline(deltas, prepared.deadline, prepared.arrival):
                finished = delta.finished
                self._observe(record, delta)
                message = assembler.feed(delta)
                record.outcome = message.finish_reason or record.outcome
                yield _without_output(message) if prepared.score_only else message
                if finished:
                    break
        except RequestTimedOut:
            record.outcome = telemetry.OUTCOME_TIMEOUT
            raise
        finally:
            self._running -= {request.request_id, BudgetedStream.answer_id(request)}
            telemetry.record_finish(record, record.outcome, self._observer)
            if not finished:
                await asyncio.shield(self._abort(request.request_id))
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()

    def _observe(self, record: telemetry.ChoiceRecord, delta: Any) -> None:
        """Book a delta's tokens and, for a failed one, how it failed."""
        if delta.token_ids:
            telemetry.record_tokens(record, len(delta.token_ids), self._observer)
        queued = getattr(delta, "queue_time_s", None)
        if queued is not None:
            record.queue_time_s = queued
        if delta.finish_reason in (FINISH_ERROR, FINISH_ABORT):
            record.outcome = delta.finish_reason

    def stats(self) -> Any:
        return self._engine.stats()


def _without_output(delta: MessageDelta) -> MessageDelta:
    """A score-only request's delta: its prompt logprobs, none of the generated token."""
    out = MessageDelta(prompt_logprobs=delta.prompt_logprobs)
    if delta.finish_reason is not None:
        out.finish_reason = "length"
        out.usage = replace(delta.usage, completion_tokens=0)
    return out
