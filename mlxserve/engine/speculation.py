"""When to speculate, what it bought, and the proposer calls (engine thread).

The core asks ``Speculation`` each step. Speculating costs twice: the verify forward reads
W tokens per row instead of one, and a verify step is read back at once (no overlap with
the host). So it is chosen per step from measurements, never assumed:
- per batch size (buckets of powers of two), the tokens per second of plain steps and of
  verify steps, as moving averages of measured step times and tokens produced;
- speculation runs while its rate is at least the plain rate; when it falls behind, it
  stops for that bucket and is probed again (one verify step; a bucket's first verify is
  not measured: it may compile kernels) after a pause that starts at 64 steps and doubles
  each time a probe loses (up to ``_MAX_PAUSE``), so at large batch it backs off by
  itself. Where speculation never pays (random MTP heads: a verify step cost 3.2-3.6x a
  plain one and yielded one token per row on the H200), the probes' cost, simulated
  with those costs (tests/unit/test_spec_backoff.py), is 1.5% of plain speed over the
  first 1,000 steps and 0.9% over 2,000 (three-step probes from a 16-step pause cost
  4.7% and 3.2%: the H200 measured 0.95x at batch 8). A probe that wins by noise is
  corrected at once: speculation is measured on every step it runs;
- per row, the number of proposals follows the row's measured acceptance (rows whose
  proposals keep failing get one token, then none for a while).
Counters (per method): drafts (rows verified with at least one proposal), proposed and
accepted tokens; the mean accepted length is 1 + accepted / drafts (vLLM's definition).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlxserve.spec.proposer import ProposalRow, TokenHistory

_ALPHA = 0.3  # weight of a new measurement in the moving averages
_PROBE_STEPS = 1
_FIRST_PAUSE = 64
_MAX_PAUSE = 4096
_WARM_STEPS = 2  # plain steps measured per bucket before the first probe
_MAX_SKIP = 4  # steps a row without proposals waits before it is asked again


@dataclass
class _Rate:
    """Moving averages of a kind of step's seconds and tokens (their ratio is the rate:
    steps that read back nothing, as after a pipeline restart, count at their cost)."""

    seconds: float = 0.0
    tokens: float = 0.0
    seen: int = 0

    def add(self, seconds: float, tokens: int) -> None:
        weight = 1.0 if self.seen == 0 else _ALPHA
        self.seconds += weight * (seconds - self.seconds)
        self.tokens += weight * (tokens - self.tokens)
        self.seen += 1

    @property
    def value(self) -> float | None:
        return self.tokens / self.seconds if self.seen and self.seconds > 0 else None


@dataclass
class _Bucket:
    plain_rate: _Rate = field(default_factory=_Rate)  # tokens / s of plain steps
    spec_rate: _Rate = field(default_factory=_Rate)  # of verify steps (and the restarts)
    probing: int = 0  # verify steps left in the current probe
    pause: int = _FIRST_PAUSE  # steps to wait after a lost probe
    resume_at: int = 0  # step number when the next probe may start
    warmed: bool = False  # its first verify step was seen (and not measured)

    @property
    def plain(self) -> float | None:
        return self.plain_rate.value

    @property
    def spec(self) -> float | None:
        return self.spec_rate.value


@dataclass
class _RowStats:
    acceptance: float = 1.0  # moving average of accepted / proposed
    skip_until: int = 0
    misses: int = 0  # steps in a row without a proposal


@dataclass
class SpecCounters:
    drafts: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    verify_steps: int = 0

    @property
    def mean_accepted_length(self) -> float:
        return 1.0 + self.accepted_tokens / self.drafts if self.drafts else 0.0

    def as_dict(self) -> dict:
        return dict(num_drafts=self.drafts, num_draft_tokens=self.draft_tokens,
                    num_accepted_tokens=self.accepted_tokens, verify_steps=self.verify_steps,
                    mean_accepted_length=self.mean_accepted_length)


@dataclass
class Speculation:
    proposer: object  # spec.proposer.Proposer
    k: int  # num_speculative_tokens
    adaptive: bool = True  # False: speculate on every step (tests, benchmarks of the rule)
    counters: SpecCounters = field(default_factory=SpecCounters)
    _buckets: dict = field(default_factory=dict)
    _rows: dict = field(default_factory=dict)
    _step: int = 0
    _verified_last: bool = False
    drained: int = 0  # tokens read back early this step (before proposing): its output

    @property
    def method(self) -> str:
        return self.proposer.method

    # ---- decisions ----------------------------------------------------------------
    def wanted(self, batch_size: int) -> bool:
        """Whether this step should try to verify proposals at ``batch_size`` rows."""
        self._step += 1
        if not self.adaptive:
            return True
        b = self._bucket(batch_size)
        if b.probing > 0:
            return True
        if b.plain is None or b.plain_rate.seen < _WARM_STEPS:
            return False
        if b.spec is not None and b.spec >= b.plain:
            return True
        if self._step >= b.resume_at:
            b.probing = _PROBE_STEPS
            return True
        return False

    def rows(self, running: dict, active: dict, hidden=None) -> list[ProposalRow]:
        """What the proposer sees of each request that may speculate now (``running``:
        the scheduler's SeqStates, ``active``: the core's RequestStates, ``hidden(rid)``:
        a row's last target hidden state, for proposers that need it). Requests with a
        grammar constraint or media, or that opted out, decode plainly."""
        wants_hidden = getattr(self.proposer, "needs_hidden", False) and hidden is not None
        rows = []
        for rid, seq in running.items():
            state = active.get(rid)
            if state is None or not seq.wants_decode or not state.output_ids:
                continue
            request = state.request
            if (not request.speculative or request.constraint is not None
                    or request.multimodal is not None):
                continue
            k = self.row_k(rid, seq.max_tokens - seq.num_scheduled_output - 1)
            if k > 0:
                rows.append(ProposalRow(rid, TokenHistory(request.prompt_tokens,
                                                          state.output_ids),
                                        k, request.sampling, len(request.prompt_tokens),
                                        hidden(rid) if wants_hidden else None))
        return rows

    def propose(self, rows: list[ProposalRow]) -> dict:
        """Request id -> Proposal for the rows that got one; rows that got none wait a
        few steps before they are asked again (doubling while they keep getting none)."""
        out = {}
        for row, proposal in zip(rows, self.proposer.propose(rows)):
            stats = self._rows.setdefault(row.request_id, _RowStats())
            if proposal.tokens:
                out[row.request_id], stats.misses = proposal, 0
            else:
                stats.misses += 1  # the lookup is cheap; the drain before it is not free
                stats.skip_until = self._step + min(stats.misses, _MAX_SKIP)
        if not out:
            self._no_verify()
        return out

    def row_k(self, request_id: str, left: int) -> int:
        """Proposals to ask for this row (0: let it decode plainly this step)."""
        stats = self._rows.setdefault(request_id, _RowStats())
        if self.adaptive and self._step < stats.skip_until:
            return 0
        k = max(1, min(self.k, round(self.k * min(1.0, 1.5 * stats.acceptance))))
        return max(0, min(k, left))

    # ---- measurements -------------------------------------------------------------
    def observe(self, batch_size: int, seconds: float, tokens: int, verified: bool) -> None:
        """One step's wall time and the tokens it produced (steps with prefills are not
        measured: their time is not decode time)."""
        if seconds <= 0 or batch_size <= 0:
            self.drained = 0
            return
        b = self._bucket(batch_size)
        tokens, self.drained = tokens + self.drained, 0
        restart, self._verified_last = self._verified_last, verified
        if not verified and not restart:
            b.plain_rate.add(seconds, tokens)
            return
        if verified and not b.warmed:  # a first (B, W) shape may compile kernels (CUDA)
            b.warmed = True
            return
        # the plain step right after a verify restarts the pipeline (it reads back
        # nothing): a cost of speculating, so it is counted with the verify steps
        b.spec_rate.add(seconds, tokens)
        if not verified:
            return
        if b.probing > 0:
            b.probing -= 1
            if b.probing == 0 and b.plain is not None and b.spec < b.plain:
                b.resume_at, b.pause = self._step + b.pause, min(2 * b.pause, _MAX_PAUSE)
        elif b.plain is not None and b.spec < b.plain:
            b.resume_at = self._step + b.pause  # fell behind while running: pause

    def record(self, request_id: str, proposed: list[int], accepted: int) -> None:
        """A row's verification: ``accepted`` of its ``proposed`` tokens were kept."""
        self.proposer.commit(request_id, proposed[:accepted])
        c = self.counters
        c.drafts += 1
        c.draft_tokens += len(proposed)
        c.accepted_tokens += accepted
        stats = self._rows.setdefault(request_id, _RowStats())
        rate = accepted / len(proposed)
        stats.acceptance = (1 - _ALPHA) * stats.acceptance + _ALPHA * rate
        if stats.acceptance < 0.1:
            stats.skip_until, stats.acceptance = self._step + 16, 0.3

    def settle(self, plan, drafts: dict, outputs: list, seconds: float, scheduler) -> None:
        """After a step: give back what the verify rejected (``scheduler.commit``), tell
        the proposer and the counters what was kept, and time the step."""
        produced: dict[str, int] = {}
        for out in outputs:
            produced[out.request_id] = produced.get(out.request_id, 0) + 1
        for rid, width in plan.decode_tokens.items():
            made = produced.get(rid, 0)
            scheduler.commit(rid, 0, width - made)
            proposal = drafts.get(rid)
            if proposal is not None and made:
                self.record(rid, proposal.tokens[:width - 1], made - 1)
        self.counters.verify_steps += bool(plan.decode_tokens)
        if not plan.prefills and plan.decodes:
            self.observe(len(plan.decodes), seconds, len(outputs),
                         verified=bool(plan.decode_tokens))
        else:
            self.drained = 0

    def stats(self) -> dict:
        """The engine stats' speculative fields (vLLM's counter names)."""
        c = self.counters
        return dict(spec_decode_num_drafts=c.drafts, spec_decode_num_draft_tokens=c.draft_tokens,
                    spec_decode_num_accepted_tokens=c.accepted_tokens,
                    spec_decode_mean_accepted_length=c.mean_accepted_length,
                    spec_decode={self.method: c.as_dict()})

    def _no_verify(self) -> None:
        """Asked, but nothing to verify: a probe step spent (the drain before it was a
        cost without a gain)."""
        for b in self._buckets.values():
            if b.probing > 0:
                b.probing -= 1
                if b.probing == 0:
                    b.resume_at = self._step + b.pause

    def drop(self, request_id: str) -> None:
        self._rows.pop(request_id, None)
        self.proposer.drop(request_id)

    def _bucket(self, batch_size: int) -> _Bucket:
        return self._buckets.setdefault(batch_size.bit_length(), _Bucket())


def build_speculation(config, loaded, model_config) -> Speculation | None:
    """The configured proposer and its controller (None: speculation off). ``"adaptive":
    false`` in the config speculates on every step (to measure the verify itself)."""
    if config is None:
        return None
    from mlxserve.spec.registry import ProposerContext, build_proposer

    proposer = build_proposer(config, ProposerContext(loaded, model_config))
    return Speculation(proposer, config.num_speculative_tokens,
                       adaptive=config.options.get("adaptive", True))
