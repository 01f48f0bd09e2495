"""When to speculate (engine/speculation.py), fed measured step costs: it backs off where
verify steps produce fewer tokens per second than plain steps, and keeps speculating
where they produce more. Pure Python: the costs are given, not timed."""

from mlxserve.engine.speculation import Speculation


class _Proposer:
    method = "test"
    needs_hidden = False

    def commit(self, request_id, accepted):
        pass

    def drop(self, request_id):
        pass


def _share_of_verify_steps(plain_s: float, verify_s: float, tokens_per_row: float,
                           batch: int = 32, steps: int = 3000) -> float:
    spec = Speculation(_Proposer(), k=4)
    verified = 0
    for _ in range(steps):
        if spec.wanted(batch):
            verified += 1
            spec.observe(batch, verify_s, round(batch * tokens_per_row), verified=True)
        else:
            spec.observe(batch, plain_s, batch, verified=False)
    return verified / steps


def test_backs_off_where_verify_steps_are_slower():
    # a verify step costs 4x a plain one and yields 2 tokens per row: half the speed
    assert _share_of_verify_steps(0.1, 0.4, 2.0) < 0.02


def test_keeps_speculating_where_verify_steps_are_faster():
    # 1.5x the cost for 3 tokens per row: twice the speed
    assert _share_of_verify_steps(0.1, 0.15, 3.0) > 0.9


def _speed_over_plain(steps: int, plain_s: float, verify_s: float, batch: int) -> float:
    """Tokens per second with the back-off over all-plain decoding, when proposals are
    never accepted (one token per row per verify step, as with random MTP heads)."""
    spec, seconds = Speculation(_Proposer(), k=3), 0.0
    for _ in range(steps):
        cost = verify_s if spec.wanted(batch) else plain_s
        spec.observe(batch, cost, batch, verified=cost == verify_s)
        seconds += cost
    return (steps * batch / seconds) / (batch / plain_s)


def test_probes_cost_under_two_percent_where_speculation_never_pays():
    # the H200's random-head MTP costs: a verify step 3.6x a plain one at 8 rows, 3.2x at 1
    for batch, ratio in ((8, 3.6), (1, 3.2)):
        assert _speed_over_plain(1000, 0.01, 0.01 * ratio, batch) >= 0.98
        assert _speed_over_plain(4000, 0.01, 0.01 * ratio, batch) >= 0.99


def test_buckets_decide_apart():
    spec = Speculation(_Proposer(), k=4)
    for _ in range(200):  # batch 64: slower; batch 1: faster
        for batch, verify_s, gain in ((64, 0.4, 1.5), (1, 0.012, 3.0)):
            if spec.wanted(batch):
                spec.observe(batch, verify_s, round(batch * gain), verified=True)
            else:
                spec.observe(batch, 0.01 if batch == 1 else 0.1, batch, verified=False)
    assert spec.wanted(1) and not spec.wanted(64)
