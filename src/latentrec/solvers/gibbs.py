"""Bayesian matrix factorization by Gibbs sampling (``--solver bayes``).

Salakhutdinov & Mnih (2008), "Bayesian Probabilistic Matrix Factorization using MCMC", with
biases: ``r_ui ~ N(mu + b_u + b_i + p_u . q_i, 1 / alpha)``. Each user's ``[p_u, b_u]`` has a
Gaussian prior whose mean and precision have a Normal-Wishart hyperprior (the same for items),
and the noise precision ``alpha`` a Gamma prior, so nothing is tuned but the number of factors
and sweeps. As in SVD++, a row's prior mean is shifted by what it rated (:class:`ImplicitPrior`;
for items: by who rated them). One Trainer epoch is one Gibbs sweep: hyperparameters, then every
user's vector from its Gaussian conditional (all users at once, as in ALS: one compiled pass over
the ratings on the CPU, one batched Cholesky elsewhere; ``rating_graph.py``), then the items, then
``alpha``. Under ``torchrun`` each rank solves its range of rows and the ranges are joined; every
rank draws the same hyperparameters and noise from the same seeded generator, so N processes
run the chain of one. The chain starts from a few ALS
sweeps. After ``burn_in`` sweeps every sample is kept (Rao-Blackwellized: the users' conditional
means with the item sample they were drawn against), and the model predicts the average of the
kept samples' predictions (Rendle, Zhang & Koren 2019 show a well-run Bayesian MF beats tuned SGD).

:class:`BayesianDot` stores the kept samples side by side, so a prediction is one dot product of
the stacked factors divided by the number of samples: exactly the average, after save and load.
"""

from __future__ import annotations

import warnings

import torch

from latentrec.config import TrainConfig, option
from latentrec.data.batches import Encoded
from latentrec.errors import ConfigError
from latentrec.solvers.als import als_init
from latentrec.solvers.base import Runner
from latentrec.solvers.rating_graph import Partition, RatingGraph

ALS_START_REG, ALS_START_SWEEPS = 0.1, 3
IMPLICIT_MAX_ROWS = 6000  # the implicit priors hold dense (rows x rows) matrices


SINGULAR = f"the Gibbs sampler met a singular posterior; use a smaller {option('n_factors')}."


def sample_gaussian(mean: torch.Tensor, chol: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``N(mean, (L L^T)^-1)`` for each row: ``mean + L^-T z``."""
    z = torch.randn(mean.shape[0], mean.shape[1], 1, device=mean.device, generator=gen)
    return mean + torch.linalg.solve_triangular(chol.mT, z, upper=True)[:, :, 0]


def sample_normal_wishart(x: torch.Tensor, gen: torch.Generator | None = None, extra_scatter: torch.Tensor | None = None,
                          extra_n: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(mean, precision)`` of the rows of ``x`` from their Normal-Wishart posterior.

    Hyperprior: ``mu0 = 0``, ``beta0 = 2``, ``W0 = I``, ``nu0 = d`` (Salakhutdinov & Mnih).
    """
    n, d = x.shape
    beta0, nu0 = 2.0, float(d)
    xbar = x.mean(0)
    centered = x - xbar
    scatter = centered.T @ centered
    w_inv = torch.eye(d, device=x.device) + scatter + (beta0 * n / (beta0 + n)) * torch.outer(xbar, xbar)
    if extra_scatter is not None:
        w_inv = w_inv + extra_scatter
    w_inv = (w_inv + w_inv.T) / 2
    prec = wishart(nu0 + n + extra_n, torch.linalg.inv(w_inv), gen)
    mean_post = n * xbar / (beta0 + n)
    chol = torch.linalg.cholesky((beta0 + n) * prec)
    mean = sample_gaussian(mean_post[None], chol[None], gen)[0]
    return mean, prec


def wishart(df: float, scale: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One draw from Wishart(df, scale) by the Bartlett decomposition."""
    d = scale.shape[0]
    chol = torch.linalg.cholesky((scale + scale.T) / 2)
    shapes = (df - torch.arange(d, device=scale.device, dtype=scale.dtype)) / 2  # chi2(n) = 2 Gamma(n / 2)
    diag = (2 * torch._standard_gamma(shapes, generator=gen)).sqrt()
    a = torch.randn(d, d, device=scale.device, dtype=scale.dtype, generator=gen).tril(-1) + torch.diag(diag)
    la = chol @ a
    return la @ la.T


def als_start(graph: RatingGraph, k: int, sweeps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A starting point near the posterior mode: a few ALS sweeps (S&M start from the MAP solution)."""
    u, v = als_init(graph.n_users, graph.n_items, k, gen)
    for _ in range(sweeps):
        u = graph.solve("user", v, SINGULAR, ridge=ALS_START_REG)[0]  # ALS's solves, with this solver's advice
        v = graph.solve("item", u, SINGULAR, ridge=ALS_START_REG)[0]
    return u, v


class ImplicitPrior:
    """Rows' prior means shifted by what they rated: ``mu + |N(u)|^-1/2 sum_{j in N(u)} y_j`` (SVD++'s idea).

    ``y`` has the conjugate prior ``y_j ~ N(0, (lam * prec)^-1)``, so given the rows it is a Bayesian
    multivariate regression that decouples after whitening by ``chol(prec)``. It is drawn by
    perturb-and-solve, ``z = (X^T X + lam I)^-1 (X^T (t + e1) + sqrt(lam) e2)``, through the smaller of
    ``X^T X`` and ``X X^T`` (Woodbury), ``X`` the normalized who-rated-what matrix of the known rows.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int, d: int):
        counts = torch.bincount(rows, minlength=n_rows).float()
        values = counts[rows].rsqrt()
        x = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n_rows, n_cols), check_invariants=False).coalesce()
        self.x_all = _rowwise(x)
        known = torch.sparse_coo_tensor(torch.stack([rows - 1, cols]), values, (n_rows - 1, n_cols),
                                        check_invariants=False).coalesce()
        xt = known.t().coalesce()  # row 0, the unknown id, rated nothing
        self.wide = n_rows - 1 < n_cols
        gram = torch.sparse.mm(known, xt.to_dense()) if self.wide else torch.sparse.mm(xt, known.to_dense())
        self.x, self.xt = _rowwise(known), _rowwise(xt)
        self.eig, self.basis = torch.linalg.eigh(gram)  # once: then a solve for any lam is two products
        self.eig.clamp_min_(0)
        self.y = torch.zeros(n_cols, d, device=rows.device)
        self.lam = 1.0

    def offsets(self) -> torch.Tensor:
        return self.x_all @ self.y

    def solve(self, w: torch.Tensor) -> torch.Tensor:
        """``(X^T X + lam I)^-1 w``, through the eigenvectors of the smaller Gram matrix."""
        inverse = lambda t: self.basis @ ((self.basis.T @ t) / (self.eig + self.lam)[:, None])
        if not self.wide:
            return inverse(w)
        return (w - self.xt @ inverse(self.x @ w)) / self.lam

    def sample(self, rows: torch.Tensor, mean: torch.Tensor, prec: torch.Tensor, gen) -> None:
        """Draw ``y`` given the rows (known ones), their prior mean and precision; then ``lam``."""
        l = torch.linalg.cholesky(prec)
        t = (rows[1:] - mean) @ l
        e1 = torch.randn(t.shape, device=t.device, generator=gen)
        e2 = torch.randn(self.y.shape, device=t.device, generator=gen)
        z = self.solve(self.xt @ (t + e1) + self.lam ** 0.5 * e2)
        self.y = torch.linalg.solve_triangular(l.T, z.T, upper=True).T
        shape = torch.tensor(1.0 + z.numel() / 2, device=z.device)
        self.lam = float(torch._standard_gamma(shape, generator=gen)) / (1.0 + float((z ** 2).sum()) / 2)


def _rowwise(x: torch.Tensor) -> torch.Tensor:
    """CSR on the CPU (its products with dense tables are ~15x faster there than COO's); COO elsewhere."""
    if x.device.type != "cpu":
        return x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR tensor support is in beta state"
        return x.to_sparse_csr()


class GibbsRunner(Runner):
    """One Trainer epoch = one Gibbs sweep; after ``burn_in`` sweeps each sample is kept in the model."""

    closed_form = True

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device,
                 part: Partition | None = None):
        if getattr(model, "kind", None) != "bayes":
            raise ConfigError("solver 'bayes' trains the Bayesian dot model only.")
        k = model.sample_factors
        self.model = model
        self.graph = RatingGraph(data, model.n_users, model.n_items, device, part)
        self.torch_threads = 1 if device.type == "cpu" else None  # torch does only small work beside the kernel
        self.burn_in = cfg.burn_in
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed if cfg.seed is not None else 0)
        self.u, self.v = als_start(self.graph, k, ALS_START_SWEEPS, self.gen)  # [p_u, b_u], [q_i, b_i]
        self.alpha = 2.0
        g = self.graph
        self.implicit = {"user": None, "item": None}
        if max(g.n_users, g.n_items) <= IMPLICIT_MAX_ROWS:
            users, items = torch.as_tensor(data.users, device=device).long(), torch.as_tensor(data.items, device=device).long()
            threads = torch.get_num_threads()
            torch.set_num_threads(self.torch_threads or threads)  # an eigh with 2 threads on a busy CPU: 70x slower
            try:
                self.implicit = {"user": ImplicitPrior(users, items, g.n_users, g.n_items, k + 1),
                                 "item": ImplicitPrior(items, users, g.n_items, g.n_users, k + 1)}
            finally:
                torch.set_num_threads(threads)
        self.sweep = 0

    def solver_state(self) -> dict:
        """The chain's state (for checkpoints): current rows, noise precision, sweep, implicit priors."""
        state = {"u": self.u, "v": self.v, "alpha": self.alpha, "sweep": self.sweep}
        for side, imp in self.implicit.items():
            if imp is not None:
                state[f"{side}.y"], state[f"{side}.lam"] = imp.y, imp.lam
        return state

    def load_solver_state(self, state: dict) -> None:
        self.u, self.v, self.alpha, self.sweep = state["u"], state["v"], state["alpha"], state["sweep"]
        for side, imp in self.implicit.items():
            if imp is not None:
                imp.y, imp.lam = state[f"{side}.y"], state[f"{side}.lam"]

    def sample_side(self, side: str, other: torch.Tensor, mine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A new draw of every row of ``side`` and its conditional mean, given the other side's rows."""
        g = self.graph
        imp = self.implicit[side]
        if imp is None:
            mean, prec = sample_normal_wishart(mine[1:], self.gen)  # row 0 (unknown) has no ratings
            prior = mean
        else:
            off = imp.offsets()
            mean, prec = sample_normal_wishart((mine - off)[1:], self.gen, imp.lam * imp.y.T @ imp.y, len(imp.y))
            prior = mean + off
        z = torch.randn(mine.shape, device=mine.device, generator=self.gen)  # all rows, on every rank
        post_mean, new = g.solve(side, other, SINGULAR, alpha=self.alpha, prec=prec, prior_mean=prior.reshape(-1, mine.shape[1]),
                                 z=z)
        if imp is not None:
            imp.sample(new, mean, prec, self.gen)
        return new, post_mean

    def epoch(self, lr_at) -> float:
        g = self.graph
        v_old = self.v
        self.u, u_mean = self.sample_side("user", self.v, self.u)
        self.v, _ = self.sample_side("item", self.u, self.v)
        sse = g.sse(self.u, self.v)
        n = g.n_ratings
        shape = torch.tensor(1.0 + n / 2, device=self.u.device)
        self.alpha = float(torch._standard_gamma(shape, generator=self.gen)) / (1.0 + sse / 2)
        slot = max(self.sweep - self.burn_in, 0)
        # Rao-Blackwellized: keep the users' conditional means with the items they were drawn against
        self.model.keep(slot, u_mean[:, :-1], v_old[:, :-1], u_mean[:, -1], v_old[:, -1] + g.mu)
        self.sweep += 1
        return sse / n
