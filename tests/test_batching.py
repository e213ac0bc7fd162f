"""The batch planner: least padded tokens plus per-pass cost, within both budgets."""

from __future__ import annotations

import itertools
import random

from ce_rerank._batching import PASS_COST_TOKENS, plan_batches


def cost(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(PASS_COST_TOKENS + len(b) * max(lengths[i] for i in b) for b in batches)


def brute_force(lengths: list[int], batch_size: int, max_tokens: int) -> int:
    """Least cost over every way of cutting the longest-first order into consecutive batches."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = None
    for cuts in itertools.product((False, True), repeat=len(order) - 1):
        batches, current = [], [order[0]]
        for i, cut in zip(order[1:], cuts, strict=True):
            if cut:
                batches.append(current)
                current = []
            current.append(i)
        batches.append(current)
        if any(len(b) > batch_size or (len(b) > 1 and len(b) * lengths[b[0]] > max_tokens) for b in batches):
            continue
        c = cost(lengths, batches)
        best = c if best is None else min(best, c)
    assert best is not None
    return best


def test_the_plan_is_the_cheapest_cut_of_the_longest_first_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lengths = [rng.choice([rng.randint(5, 40), rng.randint(40, 300)]) for _ in range(rng.randint(1, 9))]
        batch_size, max_tokens = rng.randint(1, 6), rng.choice([256, 512, 2048])
        batches = list(plan_batches(lengths, batch_size=batch_size, max_batch_tokens=max_tokens))
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)
        assert cost(lengths, batches) == brute_force(lengths, batch_size, max_tokens)


def test_one_long_pair_does_not_pad_thirty_short_ones() -> None:
    lengths = [20] * 15 + [500] + [20] * 15
    batches = list(plan_batches(lengths, batch_size=32, max_batch_tokens=100_000))
    assert batches[0] == [15]
    assert sum(len(b) for b in batches[1:]) == 30 and len(batches) == 2


def test_equal_lengths_fill_whole_batches() -> None:
    batches = list(plan_batches([40] * 64, batch_size=32, max_batch_tokens=100_000))
    assert [len(b) for b in batches] == [32, 32]


def test_budgets_bound_every_batch_and_an_oversized_pair_goes_alone() -> None:
    lengths = [900, 300, 300, 300, 300, 120, 120, 120, 120, 120]
    batches = list(plan_batches(lengths, batch_size=4, max_batch_tokens=600))
    assert batches[0] == [0]
    for b in batches[1:]:
        assert len(b) <= 4 and len(b) * lengths[b[0]] <= 600


def test_the_same_lengths_give_the_same_batches_in_input_order_on_ties() -> None:
    lengths = [30, 50, 30, 50, 30]
    first = list(plan_batches(lengths, batch_size=2, max_batch_tokens=1000))
    assert first == list(plan_batches(lengths, batch_size=2, max_batch_tokens=1000))
    assert [i for b in first for i in b] == [1, 3, 0, 2, 4]


def test_no_pairs_no_batches() -> None:
    assert list(plan_batches([], batch_size=8, max_batch_tokens=2048)) == []
