"""Score, NormalizeScore and the pick: candidates ranked by the policy's weighted scores.

Each score plugin's raw values over the candidates are normalized to 0..100 by the
NormalizeScore plugin and weighted; the total is the weighted mean, rounded to 1e-9 so that
equal sums tie exactly. The pick is the highest total; among equal totals, the highest raw
of each tie-break plugin in turn (rounded alike); then keccak(seed, order id) among what is
still tied.

Invariants: the totals are the same bits whether or not ``detail`` is asked (explain and the
round agree); a plugin whose raw is the same on every provider adds its normalized level as
a scalar, which is the value ``normalize`` would give each candidate.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from eth_utils import keccak

from marketplace.matching.framework import CycleState, NormalizeScorePlugin, ScorePlugin
from marketplace.matching.index import ProviderIndex
from marketplace.matching.model import Order
from marketplace.matching.placement import PlacementEffects

log = logging.getLogger(__name__)


class Scorer:
    """The policy's Score plugins (weight > 0), its tie-breaks and its normalizer."""

    def __init__(self, index: ProviderIndex, scores: Sequence[tuple[ScorePlugin, float]],
                 tie_break: Sequence[ScorePlugin], normalizer: NormalizeScorePlugin, seed: int) -> None:
        self.index = index
        self.scores = list(scores)
        self.tie_break = list(tie_break)
        self.normalizer = normalizer
        self.wsum = sum(w for _, w in self.scores) or 1.0
        self.tie_seed = int(seed).to_bytes(32, "big", signed=False)

    def score(self, st: CycleState, rows: np.ndarray, *, detail: bool = True):
        """(weighted totals 0..100, per-plugin (name, raw, normalized, weight) when ``detail``,
        tie-break raws)."""
        effects = PlacementEffects(self.index, st.req, rows)
        per = []
        if self.scores:
            # sum_p w_p * norm_p, left to right ("total += w * norm" from zero gives the same
            # bits); a plugin whose raw value is the same on every provider (no prices published,
            # equal reliability) normalizes to a constant level, added as a scalar
            normalizer = self.normalizer
            total = None
            n = len(rows)
            for plugin, w in self.scores:
                c = plugin.constant(st)
                if c is None:
                    raw = plugin.score(st, rows, effects)
                    norm = normalizer.normalize(raw)
                    term = w * norm
                else:
                    level = normalizer.level(c)
                    term = w * level
                    if detail:
                        raw, norm = np.full(n, c), np.full(n, level)
                if total is None:
                    total = term if c is None else np.full(n, term)
                else:
                    total = total + term
                if detail:
                    per.append((plugin.name, raw, norm, w))
        else:
            total = np.zeros(len(rows))
        ties = [plugin.score(st, rows, effects).round(9) for plugin in self.tie_break]
        return (total / self.wsum).round(9), per, ties

    def pick(self, order: Order, totals: np.ndarray, ties: Sequence[np.ndarray] = ()) -> int:
        """The highest total; among equal totals the highest raw of each tie-break plugin in
        turn; then keccak(seed, order id) among what is still tied."""
        cand = np.flatnonzero(totals == totals.max())
        for raw in ties:
            if len(cand) == 1:
                break
            sub = raw[cand]
            cand = cand[sub == sub.max()]
        if len(cand) == 1:
            return int(cand[0])
        h = int.from_bytes(keccak(self.tie_seed + order.order_id.encode())[:8], "big")
        return int(cand[h % len(cand)])
