"""Conditional normalizing flow over the 144-D (24 x 6D) pose: VisHMR's global branch (§3.3).

As in ProHMR, an invertible map ``f(. ; c)`` turns poses into standard-normal latents given the
image context ``c``. Two directions are used:

* training, ``log_prob(x, c)``: x -> z, ``log p(x|c) = log N(z; 0, I) + Σ log|det ∂z/∂x|`` (the
  NLL term of eq. 3 on the ground-truth pose);
* inference, ``sample(z, c)``: z -> x for given latents (the noise is an *input*, so exported
  graphs stay deterministic), returning the hypotheses and their log-likelihood. ``z = 0`` is the
  mode-like sample.

Each block is ActNorm -> LU invertible linear -> affine coupling (conditioned on ``c``), the
coupling's halves alternating between blocks. Couplings start as the identity (zero-initialised
output layer), so a fresh flow is a plain (learned) affine map.

Export: the linear layer's inverse needs triangular solves, which ONNX/TensorRT cannot run.
``freeze_inverse()`` precomputes ``W⁻¹ = U⁻¹ L⁻¹ Pᵀ`` once (non-persistent buffers, so
checkpoints do not change) and the z -> x pass becomes plain matmuls. ``train()`` drops the frozen
inverse, because the weights it came from are about to change.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

__all__ = ["ActNorm", "InvertibleLinearLU", "AffineCoupling", "ConditionalFlow"]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Σ_d log N(z_d; 0, 1): ... x D -> ..."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI


class ActNorm(nn.Module):
    """Per-dimension affine ``y = x · exp(log_scale) + bias`` (learned, no data init)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        """x -> (y, log|det|) with log|det| of shape x.shape[:-1]."""
        logdet = self.log_scale.sum().expand(x.shape[:-1])
        return x * self.log_scale.exp() + self.bias, logdet

    def inverse(self, y: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        """y -> (x, log|det ∂y/∂x|): every layer's inverse returns its *forward* log-det."""
        logdet = self.log_scale.sum().expand(y.shape[:-1])
        return (y - self.bias) * torch.exp(-self.log_scale), logdet


class InvertibleLinearLU(nn.Module):
    """``y = W x`` with ``W = P L (U + diag(exp(log_s)))`` (Glow's LU form).

    ``P`` is a fixed random permutation, ``L`` unit lower-triangular, ``U`` strictly upper; the
    log-determinant is simply ``Σ log_s``. Starts as the permutation (L = I, U = 0, s = 1).
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", torch.eye(dim)[perm])  # P, D x D
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim), -1))
        self.register_buffer("eye", torch.eye(dim))
        self.lower = nn.Parameter(torch.zeros(dim, dim))
        self.upper = nn.Parameter(torch.zeros(dim, dim))
        self.log_s = nn.Parameter(torch.zeros(dim))
        self.frozen = False

    def _factors(self) -> Tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.t() + torch.diag(self.log_s.exp())
        return lower, upper

    def weight(self) -> Tensor:
        lower, upper = self._factors()
        return self.perm @ lower @ upper

    def forward(self, x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        return x @ self.weight().t(), self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        logdet = self.log_s.sum().expand(y.shape[:-1])
        if self.frozen:
            return y @ self.weight_inv.t(), logdet  # matmul only: exports to ONNX / TensorRT
        lower, upper = self._factors()
        # x = U⁻¹ L⁻¹ Pᵀ y, on column vectors: solve with y as D x N
        cols = (y.reshape(-1, y.shape[-1]) @ self.perm).t()  # Pᵀ y, D x N
        cols = torch.linalg.solve_triangular(lower, cols, upper=False, unitriangular=True)
        cols = torch.linalg.solve_triangular(upper, cols, upper=True)
        return cols.t().reshape(y.shape), logdet

    @torch.no_grad()
    def freeze_inverse(self) -> None:
        lower, upper = self._factors()
        inv = torch.linalg.inv(upper) @ torch.linalg.inv(lower) @ self.perm.t()
        self.register_buffer("weight_inv", inv, persistent=False)
        self.frozen = True

    def unfreeze_inverse(self) -> None:
        self.frozen = False
        if "weight_inv" in self._buffers:
            del self._buffers["weight_inv"]


class AffineCoupling(nn.Module):
    """Half the dims pass through and, with ``c``, set a scale and shift for the other half.

    ``log_scale = bound · tanh(raw / bound)`` keeps every step's Jacobian within
    ``exp(±bound)``, which keeps training and the inverse pass numerically tame.
    """

    def __init__(self, dim: int, context_dim: int, hidden: int, flip: bool,
                 scale_bound: float = 2.0) -> None:
        super().__init__()
        self.split = dim // 2
        self.flip = flip
        self.scale_bound = scale_bound
        n_cond = dim - self.split if flip else self.split
        n_out = dim - n_cond
        self.net = nn.Sequential(
            nn.Linear(n_cond + context_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, 2 * n_out),
        )
        nn.init.zeros_(self.net[-1].weight)  # identity at initialisation
        nn.init.zeros_(self.net[-1].bias)

    def _halves(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(conditioning half, transformed half)."""
        a, b = x[..., : self.split], x[..., self.split:]
        return (b, a) if self.flip else (a, b)

    def _join(self, cond: Tensor, out: Tensor) -> Tensor:
        return torch.cat([out, cond] if self.flip else [cond, out], dim=-1)

    def _scale_shift(self, cond: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        raw_scale, shift = self.net(torch.cat([cond, c], dim=-1)).chunk(2, dim=-1)
        return self.scale_bound * torch.tanh(raw_scale / self.scale_bound), shift

    def forward(self, x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        cond, other = self._halves(x)
        log_scale, shift = self._scale_shift(cond, c)
        return self._join(cond, other * log_scale.exp() + shift), log_scale.sum(-1)

    def inverse(self, y: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        cond, other = self._halves(y)
        log_scale, shift = self._scale_shift(cond, c)
        return self._join(cond, (other - shift) * torch.exp(-log_scale)), log_scale.sum(-1)


class ConditionalFlow(nn.Module):
    """``num_blocks`` x [ActNorm, LU linear, affine coupling] over ``dim`` dims given context."""

    def __init__(self, dim: int, context_dim: int, num_blocks: int = 4, hidden: int = 256,
                 scale_bound: float = 2.0) -> None:
        super().__init__()
        self.dim = dim
        layers: List[nn.Module] = []
        for k in range(num_blocks):
            layers += [
                ActNorm(dim),
                InvertibleLinearLU(dim, seed=k),
                AffineCoupling(dim, context_dim, hidden, flip=bool(k % 2), scale_bound=scale_bound),
            ]
        self.layers = nn.ModuleList(layers)

    @staticmethod
    def _context(c: Tensor, x: Tensor) -> Tensor:
        """Broadcast context B x C to x's leading dims (B x C or B x K x C)."""
        return c if x.dim() == 2 else c.unsqueeze(1).expand(-1, x.shape[1], -1)

    def forward(self, x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        """Data -> latent. x: B x D or B x K x D; c: B x C -> (z, Σ log|det ∂z/∂x|)."""
        c = self._context(c, x)
        logdet = torch.zeros_like(x[..., 0])
        for layer in self.layers:
            x, ld = layer(x, c)
            logdet = logdet + ld
        return x, logdet

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        """log p(x | c): x B x D or B x K x D -> B or B x K."""
        z, logdet = self.forward(x, c)
        return standard_normal_log_prob(z) + logdet

    def sample(self, z: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        """Latent -> data for given z (B x K x D): (x, log p(x | c)), both computed in one pass.

        log p(x) = log N(z) + Σ log|det ∂z/∂x| (change of variables); each layer's inverse also
        returns its forward log-det, so the likelihood is accumulated on the way (no second pass).
        """
        cc = self._context(c, z)
        loglik = standard_normal_log_prob(z)
        x = z
        for layer in reversed(self.layers):
            x, logdet = layer.inverse(x, cc)
            loglik = loglik + logdet
        return x, loglik

    def freeze_inverse(self) -> "ConditionalFlow":
        """Precompute the linear layers' inverses (for inference/export); returns self."""
        for layer in self.layers:
            if isinstance(layer, InvertibleLinearLU):
                layer.freeze_inverse()
        return self

    def unfreeze_inverse(self) -> "ConditionalFlow":
        for layer in self.layers:
            if isinstance(layer, InvertibleLinearLU):
                layer.unfreeze_inverse()
        return self

    @property
    def inverse_frozen(self) -> bool:
        return all(l.frozen for l in self.layers if isinstance(l, InvertibleLinearLU))

    def train(self, mode: bool = True) -> "ConditionalFlow":
        if mode:
            self.unfreeze_inverse()
        return super().train(mode)
