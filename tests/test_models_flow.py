"""Conditional flow: exact inverse, consistent likelihoods, export-safe frozen inverse."""

from __future__ import annotations

import math

import pytest
import torch

from hmr_ros.models import ConditionalFlow


def _random_flow(dim=144, context=16, blocks=3, hidden=32, seed=0, dtype=torch.float32):
    """A flow with every parameter perturbed, so no layer is the identity.

    Matrices get entries ~0.1/sqrt(fan-in), so they stay about as well conditioned as trained ones.
    """
    torch.manual_seed(seed)
    flow = ConditionalFlow(dim, context, num_blocks=blocks, hidden=hidden).to(dtype)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() == 2 else 1))
    return flow.eval()


def test_inverse_of_forward_is_identity():
    flow = _random_flow()
    c = torch.randn(4, 16)
    x = torch.randn(4, 3, 144)
    z, _ = flow(x, c)
    x_back, _ = flow.sample(z, c)
    assert (x_back - x).abs().max() < 1e-4
    z_back, _ = flow(flow.sample(x, c)[0], c)  # and the other way round
    assert (z_back - x).abs().max() < 1e-4


def test_sample_loglik_equals_log_prob_of_sample():
    flow = _random_flow(dtype=torch.float64)
    c = torch.randn(2, 16, dtype=torch.float64)
    z = torch.randn(2, 5, 144, dtype=torch.float64)
    x, loglik = flow.sample(z, c)
    assert loglik.shape == (2, 5)
    torch.testing.assert_close(flow.log_prob(x, c), loglik, rtol=0, atol=1e-8)


def test_log_prob_matches_change_of_variables_with_autograd_jacobian():
    flow = _random_flow(dim=6, context=3, blocks=2, hidden=8, dtype=torch.float64)
    c = torch.randn(1, 3, dtype=torch.float64)
    x = torch.randn(1, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None], c)[0][0], x[0])
    z = flow(x, c)[0][0]
    expected = -0.5 * (z @ z) - 3 * math.log(2 * math.pi) + torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(flow.log_prob(x, c)[0], expected, rtol=0, atol=1e-10)


def test_log_prob_accepts_unbatched_hypotheses():
    flow = _random_flow()
    c = torch.randn(3, 16)
    x = torch.randn(3, 144)
    lp = flow.log_prob(x, c)
    assert lp.shape == (3,)
    torch.testing.assert_close(flow.log_prob(x[:, None], c)[:, 0], lp)


def test_frozen_inverse_equals_solve_and_uses_no_linalg(monkeypatch):
    flow = _random_flow()
    c, z = torch.randn(2, 16), torch.randn(2, 4, 144)
    keys = set(flow.state_dict())
    x_ref, ll_ref = flow.sample(z, c)
    flow.freeze_inverse()
    assert flow.inverse_frozen
    assert set(flow.state_dict()) == keys  # precomputed inverses are not checkpointed

    def forbidden(*args, **kwargs):
        raise AssertionError("linalg op inside a frozen inverse pass")

    monkeypatch.setattr(torch.linalg, "solve_triangular", forbidden)
    monkeypatch.setattr(torch.linalg, "inv", forbidden)
    x, ll = flow.sample(z, c)
    assert (x - x_ref).abs().max() < 1e-4
    assert (ll - ll_ref).abs().max() < 1e-3


def test_train_mode_drops_the_frozen_inverse():
    flow = _random_flow().freeze_inverse()
    flow.eval()
    assert flow.inverse_frozen
    flow.train()
    assert not flow.inverse_frozen


def test_fresh_flow_maps_zero_to_zero():
    """Couplings start as the identity and ActNorm/LU as a permutation: z = 0 -> x = 0."""
    flow = ConditionalFlow(144, 8, num_blocks=2, hidden=16)
    x, loglik = flow.sample(torch.zeros(2, 3, 144), torch.randn(2, 8))
    assert x.abs().max() == 0
    torch.testing.assert_close(loglik, torch.full((2, 3), -72 * math.log(2 * math.pi)))


@pytest.mark.parametrize("bound", [0.5, 2.0])
def test_coupling_scale_is_bounded(bound):
    flow = ConditionalFlow(8, 2, num_blocks=1, hidden=4, scale_bound=bound)
    coupling = flow.layers[2]
    with torch.no_grad():
        coupling.net[-1].bias.fill_(100.0)
    _, logdet = coupling(torch.randn(5, 8), torch.randn(5, 2))
    assert logdet.abs().max() <= 4 * bound + 1e-5  # 4 transformed dims
