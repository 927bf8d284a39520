"""Convergence diagnostics: effective sample size, R-hat, Monte-Carlo standard errors.

Draws are arrays shaped ``[chains, draws, ...]``; each trailing element is diagnosed on its own
(vectorised). Computations are in float64 numpy.

* :func:`ess` — Geyer's initial monotone sequence estimator on the multi-chain autocorrelation
  (Stan's combination of within- and between-chain variance).
* :func:`split_rhat` — classic split-chain Gelman–Rubin potential scale reduction.
* :func:`rhat` — the rank-normalised split-R-hat of Vehtari et al. (2021): the larger of the
  split-R-hat of the rank-normalised draws ("bulk") and of the rank-normalised folded draws
  ("tail").
* :func:`ess_bulk` — ESS of the rank-normalised split chains (Vehtari et al. 2021).
"""
from __future__ import annotations

import numpy as np

from ..errors import BayesLRPError


def _as_draws(draws, min_draws: int = 4) -> np.ndarray:
    if hasattr(draws, "detach"):
        draws = draws.detach().cpu().numpy()
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2:
        raise BayesLRPError("draws must be shaped [chains, draws, ...]")
    if x.shape[1] < min_draws:
        raise BayesLRPError(f"need at least {min_draws} draws per chain; got {x.shape[1]}")
    return x


def _split(x: np.ndarray) -> np.ndarray:
    """Split each chain in two halves (the middle draw is dropped for odd lengths)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, -half:]], axis=0)


def autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased (divide by n) autocovariance along axis 1 of ``[chains, n, ...]``, by FFT."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    acov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n]
    return acov / n


def ess(draws) -> np.ndarray:
    """Effective sample size of the mean of each element, ``[...]`` (float for scalars).

    Geyer's initial monotone sequence: autocorrelations ρ_t are combined over chains as
    ``1 - (W - mean_c acov_c(t)) / var⁺``; sums of adjacent pairs are truncated at the first
    negative one and made monotone; ``ESS = m·n / τ`` with ``τ = -1 + 2·Σ pairs``, and τ is
    bounded below by ``1/log10(m·n)`` as in Stan.
    """
    x = _as_draws(draws)
    m, n = x.shape[:2]
    acov = autocovariance(x)
    chain_var = acov[:, 0] * n / (n - 1.0)
    within = chain_var.mean(axis=0)
    var_plus = within * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (within - acov.mean(axis=0)) / var_plus  # [n, ...]
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[0:2 * n_pairs:2] + rho[1:2 * n_pairs:2]  # [n_pairs, ...]
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)  # before the first non-positive pair
    monotone = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(positive, monotone, 0.0).sum(axis=0)
    tau = np.maximum(tau, 1.0 / np.log10(m * n))
    out = m * n / tau
    constant = ~np.isfinite(var_plus) | (var_plus <= 0)
    out = np.where(constant, np.nan, out)
    return float(out) if out.ndim == 0 else out


def split_rhat(draws) -> np.ndarray:
    """Classic split-R-hat (Gelman et al., BDA3 §11.4) of each element."""
    x = _split(_as_draws(draws))
    n = x.shape[1]
    chain_means = x.mean(axis=1)
    within = x.var(axis=1, ddof=1).mean(axis=0)
    between = n * chain_means.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(((n - 1.0) / n * within + between / n) / within)
    return float(out) if out.ndim == 0 else out


def rank_normalize(draws) -> np.ndarray:
    """Normal scores of the pooled ranks: ``Φ⁻¹((r - 3/8) / (S + 1/4))`` (Blom), per element."""
    from scipy.special import ndtri  # imported here: scipy.stats is slow to import
    from scipy.stats import rankdata

    x = _as_draws(draws, min_draws=1)
    flat = x.reshape(-1, *x.shape[2:])
    ranks = rankdata(flat, axis=0)
    return ndtri((ranks - 0.375) / (flat.shape[0] + 0.25)).reshape(x.shape)


def rhat(draws) -> np.ndarray:
    """Rank-normalised split-R-hat (Vehtari et al. 2021): max of bulk and folded-tail R-hat."""
    x = _as_draws(draws)
    bulk = split_rhat(rank_normalize(x))
    folded = np.abs(x - np.median(x.reshape(-1, *x.shape[2:]), axis=0))
    tail = split_rhat(rank_normalize(folded))
    return np.maximum(bulk, tail)


def ess_bulk(draws) -> np.ndarray:
    """Bulk ESS: :func:`ess` of the rank-normalised split chains (Vehtari et al. 2021)."""
    x = _as_draws(draws)
    return ess(rank_normalize(_split(x)))


def mcse_mean(draws) -> np.ndarray:
    """Monte-Carlo standard error of the mean of each element: ``sd / sqrt(ESS)``."""
    x = _as_draws(draws)
    sd = x.reshape(-1, *x.shape[2:]).std(axis=0, ddof=1)
    return sd / np.sqrt(ess(x))


def ebfmi(energy) -> float:
    """Energy Bayesian fraction of missing information of one chain's Hamiltonian trace."""
    e = np.asarray(energy.detach().cpu() if hasattr(energy, "detach") else energy, dtype=np.float64)
    return float(np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2))
