"""VisHMR's heads: IUV (dense correspondence), visible parts (cross-attention), shape + camera.

Each head is one job of the paper's Fig. 2; they hold no body-model or merge logic (see
``vishmr.py``), so each can be tested and exported on its own.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from hmr_ros.body.constants import NUM_BETAS, NUM_JOINTS

__all__ = ["IUVHead", "VisibleHead", "ShapeCameraHead", "PartLinear", "IDENTITY_6D"]

#: 6D of the identity rotation in our layout (first two columns: (1,0,0), (0,1,0)).
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class IUVHead(nn.Module):
    """SimpleBaseline deconvs from stride 32 to stride 32 / 2^num_deconv (4 with 3, 2 with 4),
    then DensePose-style dense
    correspondence: per pixel a part classification (background + 24 parts) and per-part chart
    coordinates, combined into the body atlas's (I, U, V).

    Why per part and not one (U, V) regression: the atlas puts the 24 charts side by side on a
    grid, so the atlas coordinates jump at every part boundary; a single regressor averages
    across the jump and lands between charts (wrong part, garbage texel). Classifying the part
    and regressing its chart-local (u, v) is smooth everywhere, as in DensePose.

    Returns ``F_img`` (B x C x h x w at that stride, the features the visible branch warps to UV
    space), ``IUV`` (B x 3 x h x w: I = foreground probability 1 - p(background), U, V in [0, 1] of
    the atlas: the most likely part's chart, placed by ``chart_scale``/``chart_offsets``) and the
    raw outputs for the loss: ``part_logits`` (B x (P+1) x h x w, 0 = background) and
    ``part_uv`` (B x 2P x h x w, chart-local u of every part, then v of every part, in [0, 1]).
    """

    #: layers of one deconvolution block in ``self.deconv``: ConvTranspose2d, BatchNorm2d, ReLU
    LAYERS_PER_BLOCK = 3

    def __init__(self, in_channels: int, channels: int = 256, num_deconv: int = 3,
                 chart_offsets=None, chart_scale: float = 1.0) -> None:
        super().__init__()
        layers = []
        for k in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_channels if k == 0 else channels, channels, kernel_size=4,
                                   stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconv = nn.Sequential(*layers)
        if chart_offsets is None:  # P x 2 atlas position of each part's chart (local 0 -> here)
            raise ValueError("IUVHead needs the atlas's chart_offsets (P x 2) and chart_scale")
        offsets = torch.as_tensor(chart_offsets, dtype=torch.float32)
        self.num_parts = int(offsets.shape[0])
        self.register_buffer("chart_offsets", offsets, persistent=False)
        self.chart_scale = float(chart_scale)
        self.classifier = nn.Conv2d(channels, self.num_parts + 1, kernel_size=1)
        self.chart_uv = nn.Conv2d(channels, 2 * self.num_parts, kernel_size=1)

    @torch.no_grad()
    def grow(self, first_new: int, layer4: Tensor) -> None:
        """Make deconv blocks ``first_new``... pass their input on, upsampled: the transposed
        conv becomes per-channel bilinear x2 upsampling, and its BatchNorm is set, from the
        statistics of ``layer4`` (a batch of backbone outputs), to give back its input.

        Why: a head trained at stride 4 gains a stride-2 block (``num_deconv`` 3 -> 4) without
        losing what it learned -- the grown network starts as the old one, at twice the
        resolution, instead of behind a random layer. Exact away from the border; the
        transposed conv's zero padding dims the outermost row and column (x0.75, corners
        x0.56), which the first steps learn back.
        """
        n = self.LAYERS_PER_BLOCK
        blocks = [self.deconv[n * k:n * k + n] for k in range(len(self.deconv) // n)]
        if not 1 <= first_new < len(blocks):
            raise ValueError(f"grow: first_new must be in [1, {len(blocks) - 1}], got {first_new}")
        training = self.training
        self.eval()  # the blocks before the grown ones run on their running statistics
        x = layer4
        for k, (conv, norm, act) in enumerate(blocks):
            if k >= first_new:
                if conv.in_channels != conv.out_channels:
                    raise ValueError("grow: a grown block must keep its channel count")
                taps = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=conv.weight.dtype,
                                    device=conv.weight.device)
                conv.weight.zero_()
                idx = torch.arange(conv.out_channels)
                conv.weight[idx, idx] = taps[:, None] * taps[None, :]
                y = conv(x)
                mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.weight.copy_(torch.sqrt(var + norm.eps))
                norm.bias.copy_(mean)
            x = act(norm(conv(x)))
        self.train(training)

    def forward(self, layer4: Tensor):
        features = self.deconv(layer4)
        logits = self.classifier(features)  # B x (P+1) x h x w
        part_uv = torch.sigmoid(self.chart_uv(features))  # B x 2P x h x w
        return features, self.to_atlas(logits, part_uv), logits, part_uv

    def to_atlas(self, logits: Tensor, part_uv: Tensor) -> Tensor:
        """(part logits, per-part chart uv) -> atlas IUV of the most likely part (no gradient
        through the choice: the warp is an index operation anyway)."""
        p = self.num_parts
        # 1 - p(background), without a channel softmax (slow on the CPU provider)
        fg = 1.0 - torch.exp(logits[:, :1] - torch.logsumexp(logits, dim=1, keepdim=True))
        part = logits[:, 1:].argmax(dim=1, keepdim=True)  # B x 1 x h x w
        u = torch.gather(part_uv[:, :p], 1, part)
        v = torch.gather(part_uv[:, p:], 1, part)
        origin = self.chart_offsets[part[:, 0]].permute(0, 3, 1, 2)  # B x 2 x h x w
        return torch.cat([fg, origin[:, :1] + self.chart_scale * u,
                          origin[:, 1:] + self.chart_scale * v], dim=1)


class PartLinear(nn.Module):
    """One linear map per body part: B x J x D_in -> B x J x D_out (weights J x D_in x D_out).

    Parts have different rotation statistics; separate output layers cost almost nothing.
    """

    def __init__(self, num_parts: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_parts, in_dim, out_dim) * 0.01)
        self.bias = nn.Parameter(torch.zeros(num_parts, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bjd,jdo->bjo", x, self.weight) + self.bias


class _CrossAttentionLayer(nn.Module):
    """Pre-norm transformer decoder layer without self-attention: queries read the tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, queries: Tensor, tokens: Tensor) -> Tensor:
        kv = self.norm_kv(tokens)
        queries = queries + self.attn(self.norm_q(queries), kv, kv, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))


class VisibleHead(nn.Module):
    """UV-space features -> per-part absolute rotation (6D) and visibility logit (paper §3.2).

    ``F_UV`` (B x (C+3) x S x S: mean features, mean pixel x/y, occupancy) is reduced by strided
    convs to D x S/2^n x S/2^n tokens (+ learned positional embedding, since the atlas layout is
    fixed, position = body part); 24 learned part queries cross-attend to them; a per-part linear
    layer gives 6D + 1 logit. The 6D output is biased to the identity rotation so an untrained
    head predicts valid, neutral rotations.
    """

    def __init__(self, in_channels: int, uv_size: int, dim: int = 128, heads: int = 4,
                 layers: int = 2, num_downsample: int = 2, num_parts: int = NUM_JOINTS,
                 condition_dim: int = 0) -> None:
        super().__init__()
        convs = []
        for k in range(num_downsample):
            convs += [
                nn.Conv2d(in_channels if k == 0 else dim, dim, kernel_size=3, stride=2,
                          padding=1, bias=False),
                nn.BatchNorm2d(dim),
                nn.ReLU(inplace=True),
            ]
        self.reduce = nn.Sequential(*convs)
        side = uv_size
        for _ in range(num_downsample):
            side = (side + 1) // 2
        self.pos_embed = nn.Parameter(torch.randn(side * side, dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(num_parts, dim) * 0.02)
        self.layers = nn.ModuleList(_CrossAttentionLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = PartLinear(num_parts, dim, 7)
        with torch.no_grad():
            self.out.bias[:, :6] = torch.tensor(IDENTITY_6D)
        # optional conditioning vector (the keypoint embedding): one more token to attend to,
        # and a shift of every part query
        self.condition = nn.Linear(condition_dim, 2 * dim) if condition_dim else None

    def forward(self, uv_features: Tensor, condition: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """B x (C+3) x S x S (and B x condition_dim) -> (abs 6D B x J x 6, visibility logits
        B x J)."""
        tokens = self.reduce(uv_features).flatten(2).transpose(1, 2) + self.pos_embed  # B x N x D
        queries = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)  # B x J x D
        if self.condition is not None and condition is not None:
            token, shift = self.condition(condition).chunk(2, dim=-1)
            tokens = torch.cat([tokens, token.unsqueeze(1)], dim=1)
            queries = queries + shift.unsqueeze(1)
        for layer in self.layers:
            queries = layer(queries, tokens)
        out = self.out(self.norm(queries))  # B x J x 7
        return out[..., :6], out[..., 6]


class ShapeCameraHead(nn.Module):
    """Pooled context -> β (10) and weak-perspective camera (s, tx, ty) as residuals.

    β is predicted around 0 (the mean body) and the camera around (0.9, 0, 0) (SPIN's mean:
    the person fills ~90 % of the crop); the last layer starts near zero so the first outputs
    are those means.
    """

    def __init__(self, context_dim: int, hidden: int = 256, cam_mean=(0.9, 0.0, 0.0)) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(context_dim, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, NUM_BETAS + 3))
        nn.init.xavier_uniform_(self.mlp[-1].weight, gain=0.01)
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("cam_mean", torch.tensor(cam_mean, dtype=torch.float32))

    def forward(self, context: Tensor) -> Tuple[Tensor, Tensor]:
        out = self.mlp(context)
        return out[:, :NUM_BETAS], out[:, NUM_BETAS:] + self.cam_mean
