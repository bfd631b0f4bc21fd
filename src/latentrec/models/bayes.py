"""The Bayesian biased dot model: posterior samples kept side by side (trained by ``solvers/gibbs.py``)."""

from __future__ import annotations

import torch

from latentrec.models.dot import DotProductBias


class BayesianDot(DotProductBias):
    """The biased dot model averaged over ``n_samples`` posterior samples of ``n_factors`` each.

    ``user_factors`` / ``item_factors`` hold the samples side by side (``n_factors * n_samples``
    columns), the item side already divided by the number of kept samples, so the ordinary dot
    product of a user row and an item row *is* the average of the samples' dot products: the
    model predicts (and ranks, and compares items) exactly as a linear ``DotProductBias``.
    ``user_bias`` / ``item_bias`` are posterior means (the global mean folded into the item biases).
    """

    kind = "bayes"

    def __init__(self, n_users: int, n_items: int, n_factors: int = 10, n_samples: int = 1,
                 y_range: tuple[float, float] | None = None, bias: bool = True):
        super().__init__(n_users, n_items, n_factors * n_samples, None, bias)
        self.sample_factors = n_factors
        self.kept = n_samples  # samples filled in: training fills them one by one; loading counts them
        self._prior = None  # user_prior(), until the weights change
        with torch.no_grad():
            for t in (self.user_factors, self.item_factors, self.user_bias, self.item_bias):
                t.zero_()

    @property
    def n_samples(self) -> int:
        return self.n_factors // self.sample_factors

    @property
    def filled_factors(self) -> int:
        """Columns holding kept samples; the others are still zero (scoring may skip them)."""
        return self.kept * self.sample_factors

    def config(self) -> dict:
        return {**super().config(), "n_factors": self.sample_factors, "n_samples": self.n_samples}

    def item_samples(self, items: torch.Tensor) -> torch.Tensor:
        """The kept item factor samples of ``items``, shape ``(kept, len(items), n_factors)``."""
        q = self.item_factors[items, :self.filled_factors] * self.kept
        return q.view(len(items), self.kept, self.sample_factors).transpose(0, 1)

    @torch.no_grad()
    def user_prior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per kept sample, the precision ``(S, k+1, k+1)`` and mean ``(S, k+1)`` (float64) of the known users'
        ``[p, b]`` rows: the Gaussian the sampler drew users from, estimated from the users it kept (empirical
        Bayes; fold-in's prior). Computed once, a sample at a time, until the weights change."""
        if self._prior is None:
            k, bias = self.sample_factors, self.user_bias[1:].double().cpu()[:, None]  # row 0 is the unknown id
            precs, means = [], []
            for s in range(self.kept):
                rows = torch.cat([self.user_factors[1:, s * k:(s + 1) * k].double().cpu(), bias], 1)
                mean = rows.mean(0)
                cov = (rows - mean).T @ (rows - mean) / max(len(rows) - 1, 1)
                cov.diagonal().add_(1e-6)
                precs.append(torch.linalg.inv(cov))
                means.append(mean)
            self._prior = torch.stack(precs), torch.stack(means)
        return self._prior

    def load_state_dict(self, *args, **kwargs):
        """Load, and count the filled samples: an earlier epoch's weights (the best one's, a checkpoint's) hold
        fewer than ``n_samples``, and the unfilled slots are zero."""
        self._prior = None
        out = super().load_state_dict(*args, **kwargs)
        q = self.item_factors.detach()
        filled = q.view(len(q), self.n_samples, self.sample_factors).abs().amax((0, 2)).cpu() > 0
        self.kept = int(filled.nonzero().max()) + 1 if filled.any() else self.n_samples
        return out

    @torch.no_grad()
    def keep(self, slot: int, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor) -> None:
        """Store sample number ``slot`` (0-based) and make the model the average of samples ``0..slot``."""
        self._prior = None
        k = self.sample_factors
        self.kept = slot + 1
        w = 1.0 / (slot + 1)
        self.item_factors[:, :slot * k].mul_(1 - w)
        self.user_factors[:, slot * k:(slot + 1) * k] = p
        self.item_factors[:, slot * k:(slot + 1) * k] = q * w
        self.user_bias.mul_(1 - w).add_(bu, alpha=w)
        self.item_bias.mul_(1 - w).add_(bi, alpha=w)
