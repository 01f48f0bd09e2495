"""Which requests run in the next engine step. Pure Python: no MLX import.

One step holds, in this order:
1. one decode token for every running request whose prompt is fully prefilled (so running
   streams never freeze behind a long prompt),
2. prefill chunks for running requests still reading their prompt (oldest first),
3. newly admitted requests from the waiting queue, strictly first-in first-out: the head
   of the queue blocks the ones behind it, so nobody is overtaken.

Every step spends at most ``max_num_batched_tokens`` tokens; one request's prefill chunk
is at most ``prefill_chunk_size`` tokens.

KV memory is reserved by use, as vLLM does: admission reserves what the request will hold
once its prompt is read plus a little headroom (whole blocks of ``BLOCK_TOKENS``), and a
decode grows the reservation a block at a time. When a decode cannot grow, the newest
running request is preempted: its reservation is freed, it goes back to the front of the
queue (``StepPlan.preempted`` tells the core to drop its cache) and, re-admitted, it reads
its prompt plus the output it had so far again (``recompute``), so it goes on exactly where
it was. A step that preempted admits nobody. Requests that cannot be recomputed (``pinned``:
media, prompt logprobs) reserve their whole life (prompt + max_tokens) at admission and are
never preempted. A request that could never fit alone is refused up front.

The engine core calls ``schedule()`` before each step, ``commit()`` for tokens read back
and ``finish()`` for requests that stopped. ``can_x()`` methods never change state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from mlxserve.errors import EngineOverloaded, InvalidRequest

BLOCK_TOKENS = 16  # reservations are whole blocks of this many tokens
HEADROOM_TOKENS = 16  # reserved beyond what a request needs now, so it grows less often


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


@dataclass
class SeqState:
    """The scheduler's bookkeeping for one request."""

    request_id: str
    prompt_len: int
    max_tokens: int
    num_prefilled: int = 0  # tokens of ``target_len`` handed to the runner so far
    num_scheduled_output: int = 0  # output tokens whose computation has been scheduled
    num_committed: int = 0  # output tokens read back and accepted
    pinned: bool = False  # never preempted: reserves its whole life at admission
    reserved: int = 0  # KV tokens reserved now (0 while waiting)
    recompute: int = 0  # output tokens read again as prompt since the last preemption
    preempted: bool = False  # waiting to be resumed
    # SpecPrefill: the draft reads ``draft_len`` prompt tokens first; once it has scored
    # them, the target prefills ``prefill_len`` (cached + kept) instead of prompt_len
    draft_len: int = 0
    num_drafted: int = 0
    prefill_len: int | None = None

    @property
    def base_len(self) -> int:
        """Prompt tokens the target holds: all, or SpecPrefill's cached + kept ones."""
        return self.prompt_len if self.prefill_len is None else self.prefill_len

    @property
    def target_len(self) -> int:
        """Tokens to prefill: the prompt, plus the output so far after a preemption."""
        return self.base_len + self.recompute

    @property
    def whole_life(self) -> int:
        return self.base_len + self.max_tokens

    @property
    def drafting(self) -> bool:
        return self.num_drafted < self.draft_len

    @property
    def scoring(self) -> bool:
        """The draft has read the prompt; the kept tokens are not known yet."""
        return self.draft_len > 0 and self.prefill_len is None

    @property
    def prefill_done(self) -> bool:
        return not self.scoring and self.num_prefilled >= self.target_len

    @property
    def wants_decode(self) -> bool:
        return self.prefill_done and self.num_scheduled_output < self.max_tokens

    def reservation_for(self, tokens: int) -> int:
        """What to reserve for a request that will hold ``tokens`` tokens."""
        if self.pinned:
            return self.whole_life
        return min(self.whole_life, _round_up(tokens, BLOCK_TOKENS) + HEADROOM_TOKENS)

    def admission_tokens(self) -> int:
        """Tokens held once admitted and prefilled (a resumed one: its output so far too)."""
        return self.prompt_len + (self.num_committed if self.preempted else 0) + 1

    def resume(self) -> None:
        """Re-admitted after a preemption: the output read back so far becomes prompt."""
        self.recompute = self.num_committed
        self.num_scheduled_output = self.num_committed
        self.num_prefilled = 0
        self.preempted = False


@dataclass(frozen=True)
class PrefillChunk:
    request_id: str
    start: int  # first prompt position of the chunk
    length: int
    is_last: bool  # the chunk ends the prompt: its last logits give the first output token
    draft: bool = False  # a SpecPrefill draft chunk (is_last: the draft's last, it scores)


@dataclass
class StepPlan:
    prefills: list[PrefillChunk] = field(default_factory=list)
    decodes: list[str] = field(default_factory=list)  # request ids
    # tokens a decode row computes this step when more than one (a verify step: its last
    # token plus k proposals); absent = 1
    decode_tokens: dict[str, int] = field(default_factory=dict)
    # requests preempted this step: the core drops their caches before the step runs
    preempted: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        decode = sum(self.decode_tokens.get(rid, 1) for rid in self.decodes)
        return decode + sum(c.length for c in self.prefills)

    @property
    def empty(self) -> bool:
        return not self.prefills and not self.decodes

    @property
    def read_now(self) -> bool:
        """Read this step back before launching the next: a verify step (its proposals
        follow its outcome) or one that ends prompts (their first tokens: left in flight,
        they waited a whole next step, ~0.5 s at 64 clients on the H200)."""
        return bool(self.decode_tokens) or any(c.is_last and not c.draft
                                               for c in self.prefills)


class Scheduler:
    def __init__(self, *, max_num_seqs: int, max_num_batched_tokens: int,
                 prefill_chunk_size: int, kv_tokens_total: int, max_queue_size: int = 1 << 30,
                 seq_overhead_tokens: int = 0):
        """``seq_overhead_tokens``: what every request holds whatever its length (SSM
        layers' state), in tokens of KV."""
        if min(max_num_seqs, max_num_batched_tokens, prefill_chunk_size, kv_tokens_total) < 1:
            raise ValueError("scheduler limits must all be at least 1")
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.prefill_chunk_size = prefill_chunk_size
        self.kv_tokens_total = kv_tokens_total
        self.max_queue_size = max_queue_size
        self.seq_overhead_tokens = seq_overhead_tokens
        self.waiting: deque[SeqState] = deque()
        self.running: dict[str, SeqState] = {}  # insertion order = admission order
        self.kv_tokens_used = 0  # reserved by running requests
        self.num_preemptions = 0
        # at admission: how many prompt tokens a prefix-cache hit already holds
        self.cached_prefix: Callable[[str], int] | None = None
        # at admission: (request id, cached tokens) -> whether a SpecPrefill draft reads it
        self.sparse_prefill: Callable[[str, int], bool] | None = None

    # ---- checks (no side effects) -------------------------------------------------
    @property
    def kv_tokens_free(self) -> int:
        return self.kv_tokens_total - self.kv_tokens_used

    def can_ever_fit(self, prompt_len: int, max_tokens: int) -> bool:
        return prompt_len + max_tokens + self.seq_overhead_tokens <= self.kv_tokens_total

    def can_admit(self, seq: SeqState) -> bool:
        need = seq.reservation_for(seq.admission_tokens()) + self.seq_overhead_tokens
        return len(self.running) < self.max_num_seqs and need <= self.kv_tokens_free

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def check_request(self, prompt_len: int, max_tokens: int) -> None:
        """Raise the error a request would get from ``add``, without adding it."""
        if not self.can_ever_fit(prompt_len, max_tokens):
            raise InvalidRequest(
                f"the prompt ({prompt_len} tokens) plus max_tokens ({max_tokens}) needs more "
                f"KV-cache memory than this server has ({self.kv_tokens_total} tokens)",
                param="max_tokens", code="context_length_exceeded",
            )
        if len(self.waiting) >= self.max_queue_size:
            raise EngineOverloaded("the server is busy: too many requests are waiting")

    # ---- verbs --------------------------------------------------------------------
    def add(self, seq: SeqState) -> None:
        self.check_request(seq.prompt_len, seq.max_tokens)
        if seq.request_id in self.running or any(
            s.request_id == seq.request_id for s in self.waiting
        ):
            raise InvalidRequest(f"request id {seq.request_id!r} is already in use")
        self.waiting.append(seq)

    def finish(self, request_id: str) -> SeqState | None:
        """Remove a request (finished, aborted or failed) and free its reservation."""
        seq = self.running.pop(request_id, None)
        if seq is not None:
            self._release(seq)
            return seq
        seq = self._waiting_seq(request_id)
        if seq is not None:
            self.waiting.remove(seq)
        return seq

    def commit(self, request_id: str, accepted: int, computed: int = 1) -> None:
        """``accepted`` of the ``computed`` output tokens scheduled for a request were
        kept (a verify step keeps a prefix of its proposals): the rest are unscheduled.
        A request preempted while its tokens were in flight still counts them: they are
        output, and its resume recomputes them as prompt."""
        seq = self.running.get(request_id)
        if seq is not None:
            seq.num_committed += accepted
            seq.num_scheduled_output -= computed - accepted
            return
        seq = self._waiting_seq(request_id)
        if seq is not None and seq.preempted:
            seq.num_committed += accepted

    def schedule(self, proposals: dict[str, int] | None = None) -> StepPlan:
        """``proposals``: draft tokens per request to verify this step (each costs one
        more token of budget and of the request's max_tokens)."""
        plan = StepPlan()
        budget = self.max_num_batched_tokens
        for seq in list(self.running.values()):
            if budget > 0 and seq.wants_decode and seq.request_id in self.running:
                budget -= self._schedule_decode(seq, (proposals or {}).get(seq.request_id, 0),
                                                budget, plan)
        for seq in self.running.values():
            if budget > 0 and not seq.prefill_done:
                budget -= self._schedule_prefill(seq, budget, plan)
        while (budget > 0 and not plan.preempted and self.waiting
               and self.can_admit(self.waiting[0])):
            seq = self._admit(self.waiting.popleft())
            budget -= self._schedule_prefill(seq, budget, plan)
        return plan

    # ---- internals ----------------------------------------------------------------
    def _waiting_seq(self, request_id: str) -> SeqState | None:
        return next((s for s in self.waiting if s.request_id == request_id), None)

    def _reserve(self, seq: SeqState, tokens: int) -> None:
        want = seq.reservation_for(tokens) + self.seq_overhead_tokens
        if want > seq.reserved:
            self.kv_tokens_used += want - seq.reserved
            seq.reserved = want

    def _release(self, seq: SeqState) -> None:
        self.kv_tokens_used -= seq.reserved
        seq.reserved = 0

    def _admit(self, seq: SeqState) -> SeqState:
        resumed = seq.preempted
        if resumed:
            seq.resume()
        self.running[seq.request_id] = seq
        self._reserve(seq, seq.target_len + 1)
        if self.cached_prefix is not None:
            seq.num_prefilled = max(0, min(self.cached_prefix(seq.request_id),
                                           seq.target_len - 1))
        if not resumed and self._sparse(seq):
            seq.draft_len, seq.pinned = seq.prompt_len, True  # its KV is not recomputable
            self._reserve(seq, seq.whole_life)
        return seq

    def _sparse(self, seq: SeqState) -> bool:
        """Whether a SpecPrefill draft reads the prompt (only when the request's whole life
        fits now: a sparse prefill cannot be recomputed, so it is never preempted)."""
        fits = (seq.whole_life + self.seq_overhead_tokens - seq.reserved
                <= self.kv_tokens_free)
        return (fits and self.sparse_prefill is not None
                and self.sparse_prefill(seq.request_id, seq.num_prefilled))

    def sparse_selected(self, request_id: str, kept: int) -> None:
        """The draft scored a sparse request: the target prefills ``kept`` tokens after
        the cached ones (and its KV reservation shrinks to them)."""
        seq = self.running.get(request_id)
        if seq is None:
            return
        seq.prefill_len = seq.num_prefilled + kept
        self._release(seq)
        self._reserve(seq, seq.whole_life)

    def _schedule_draft(self, seq: SeqState, budget: int, plan: StepPlan) -> int:
        n = min(seq.draft_len - seq.num_drafted, self.prefill_chunk_size, budget)
        plan.prefills.append(PrefillChunk(seq.request_id, seq.num_drafted, n, draft=True,
                                          is_last=seq.num_drafted + n == seq.draft_len))
        seq.num_drafted += n
        return n

    def _schedule_decode(self, seq: SeqState, proposed: int, budget: int,
                         plan: StepPlan) -> int:
        left = seq.max_tokens - seq.num_scheduled_output
        width = min(1 + proposed, budget, left)
        if not self._make_room(seq, seq.base_len + seq.num_scheduled_output + width, plan):
            return 0
        plan.decodes.append(seq.request_id)
        if width > 1:
            plan.decode_tokens[seq.request_id] = width
        seq.num_scheduled_output += width
        return width

    def _make_room(self, seq: SeqState, tokens: int, plan: StepPlan) -> bool:
        """Grow ``seq``'s reservation to hold ``tokens``, preempting the newest running
        requests while memory is short; False when ``seq`` itself had to go."""
        need = seq.reservation_for(tokens) + self.seq_overhead_tokens - seq.reserved
        while need > self.kv_tokens_free:
            victim = next((s for s in reversed(self.running.values()) if not s.pinned), None)
            if victim is None:  # only pinned ones, which never grow: cannot happen
                return False
            self._preempt(victim, plan)
            if victim is seq:
                return False
        self._reserve(seq, tokens)
        return True

    def _preempt(self, seq: SeqState, plan: StepPlan) -> None:
        del self.running[seq.request_id]
        self._release(seq)
        seq.preempted = True
        self.waiting.appendleft(seq)
        plan.preempted.append(seq.request_id)
        self.num_preemptions += 1

    def _schedule_prefill(self, seq: SeqState, budget: int, plan: StepPlan) -> int:
        if seq.drafting:
            return self._schedule_draft(seq, budget, plan)
        if seq.scoring:
            return 0  # waits for sparse_selected
        n = min(seq.target_len - seq.num_prefilled, self.prefill_chunk_size, budget)
        chunk = PrefillChunk(seq.request_id, seq.num_prefilled, n,
                             is_last=seq.num_prefilled + n == seq.target_len)
        plan.prefills.append(chunk)
        seq.num_prefilled += n
        if chunk.is_last:
            seq.num_scheduled_output += 1
        return n
