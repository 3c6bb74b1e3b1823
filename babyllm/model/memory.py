"""MEMORY and MEMORY 2: gated leaky averages along the sequence (a [T, T] decay matrix each, their decays'
gradient in closed form), mixed per neuron with the input and a projected path."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babyllm.model import gemm
from babyllm.model.layout import batch_major, neuron_major
from babyllm.stats import (
    MEMORY_DECAY,
    MEMORY_DECAYS,
    MEMORY_GATE,
    MEMORY_MIX,
    MEMORY_SOURCES,
)


def decay_matrix(decays: Tensor, length: int) -> Tensor:
    """E [len(decays), T, T] with E[j, t, s] = (1 - d_j) * d_j^(t - s) for s <= t, else 0."""
    t = torch.arange(length, device=decays.device, dtype=decays.dtype)
    lag = (t.view(-1, 1) - t.view(1, -1)).clamp_(min=0)  # clamped first so exp never overflows
    mask = torch.tril(torch.ones(length, length, device=decays.device, dtype=decays.dtype))
    d = decays.view(-1, 1, 1)
    return (1 - d) * torch.exp(lag * torch.log(d)) * mask


class GatedLeakyAverages(torch.autograd.Function):
    """g_s*S + g_l*L + g_u*u for u [N, B, T], per-neuron gates [N, 3] and decays [2]; S, L its leaky averages.

    Written out so the decays' gradient comes in closed form from the recurrence rather than through the
    [T, T] decay matrices. For Y = u E^T (Y_t = d*Y_(t-1) + (1-d)*u_t), dY/dd = (Y - u) E^T / (d(1-d)),
    so dLoss/dd = <G E, Y - u> / (d(1-d)) = <G (E - I), Y> / (d(1-d)), using <G E, u> = <G, Y>. G (E - I)
    also gives the input gradient (G E = G (E - I) + G), so the two [T, T] weight-gradient GEMMs (a
    reduction over all N*B rows, the slowest shape in a step) become per-neuron dot products. Tested
    against autograd through the reference recurrence.
    """

    @staticmethod
    def forward(ctx: Any, u: Tensor, gates: Tensor, decays: Tensor) -> Tensor:
        N, B, T = u.shape
        E = decay_matrix(decays, T)  # [2, T, T], fp32
        flat = u.view(N * B, T)
        short = gemm.mm(flat, E[0].t().to(u.dtype)).view(N, B, T)
        long = gemm.mm(flat, E[1].t().to(u.dtype)).view(N, B, T)
        g = gates.unsqueeze(2).unsqueeze(3)  # [N, 3, 1, 1]
        out = short * g[:, 0]
        out.addcmul_(long, g[:, 1]).addcmul_(u, g[:, 2])
        ctx.save_for_backward(u, short, long, gates, decays, E)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        u, short, long, gates, decays, E = ctx.saved_tensors
        N, B, T = u.shape
        grad = grad.contiguous()
        flat = grad.view(N * B, T)
        less = (E - torch.eye(T, device=E.device, dtype=E.dtype)).to(grad.dtype)  # E - I
        k_short = gemm.mm(flat, less[0]).view(N, B, T)  # G (E_s - I)
        k_long = gemm.mm(flat, less[1]).view(N, B, T)
        g = gates.unsqueeze(2).unsqueeze(3)
        du = dgates = ddecays = None
        if ctx.needs_input_grad[0]:
            du = k_short * g[:, 0]
            du.addcmul_(k_long, g[:, 1]).addcmul_(grad, g.sum(1))
        if ctx.needs_input_grad[1]:
            dgates = torch.stack([_dots(grad, short), _dots(grad, long), _dots(grad, u)], dim=1).to(gates.dtype)
        if ctx.needs_input_grad[2]:
            per_neuron = torch.stack([_dots(k_short, short), _dots(k_long, long)])  # [2, N]
            ddecays = (per_neuron * gates[:, :2].t().to(per_neuron.dtype)).sum(1) / (decays * (1 - decays))
            ddecays = ddecays.to(decays.dtype)
        return du, dgates, ddecays


def _dots(a: Tensor, b: Tensor) -> Tensor:
    """Per-neuron dot products of a and b [N, B, T] -> [N], summed in at least fp32.

    (bmm's [N, 1, K] x [N, K, 1] measured about 2x slower inside a CPU step.)
    """
    return (a * b).view(a.shape[0], -1).sum(1, dtype=torch.promote_types(a.dtype, torch.float32))


class Memory(nn.Module):
    """MEMORY: short- and long-term leaky averages along the sequence, mixed per neuron by learned gates.

    S_t = d_s * S_(t-1) + (1 - d_s) * u_t and likewise L with d_l, computed for all t at once as the
    activations times a [T, T] decay matrix each. Per-neuron softmax gates mix four sources: S, L, the
    input u itself, and a projected memory (L through a low-rank bottleneck, the only cross-neuron path).
    With `mlp` (model.memory_mlp) the projected path is instead a GELU bottleneck over the input at the same
    position, up(GELU(down(u) + b)): the one place after the sequence mixing where neurons combine
    nonlinearly what the windows gathered from different positions (measured: the largest single gain).
    """

    SOURCES = MEMORY_SOURCES  # the gates' columns (babyllm.stats names them)

    def __init__(self, neurons: int, rank: int, decay_short: float = 0.5, decay_long: float = 0.95,
                 mlp: bool = False) -> None:
        super().__init__()
        self.mlp = mlp
        if mlp:
            self.proj_bias = nn.Parameter(torch.zeros(rank))
        self.decay_logits = nn.Parameter(torch.logit(torch.tensor([decay_short, decay_long])))
        self.gate_logits = nn.Parameter(torch.zeros(neurons, len(self.SOURCES)))
        self.down = nn.Linear(neurons, rank, bias=False)
        self.up = nn.Linear(rank, neurons, bias=False)
        nn.init.zeros_(self.up.weight)  # the projected path starts silent and grows in

    def decays(self) -> Tensor:
        """[2]: short-term and long-term decay, each in (0, 1)."""
        return torch.sigmoid(self.decay_logits)

    def gates(self) -> Tensor:
        """[N, 4]: per-neuron weights of (short, long, input, proj), summing to 1."""
        return torch.softmax(self.gate_logits, dim=-1)

    def readings(self, prefix: str) -> dict[str, Tensor]:
        """Both decays and each source's mean gate, as `<prefix>_decay_short`, `<prefix>_gate_input`, ..."""
        out = {MEMORY_DECAY.format(memory=prefix, decay=d): v
               for d, v in zip(MEMORY_DECAYS, self.decays(), strict=True)}
        for src, g in zip(self.SOURCES, self.gates().mean(0), strict=True):
            out[MEMORY_GATE.format(memory=prefix, source=src)] = g
        return out

    def gate_histogram(self, bins: int) -> Tensor:
        """[4, bins]: how many neurons' gate for each source falls in each of `bins` equal bins over [0, 1]."""
        g = self.gates().detach().t()  # [4, N]
        sources = len(self.SOURCES)
        at = (g * bins).long().clamp_(0, bins - 1)  # a gate of exactly 1 goes in the last bin
        at = at + torch.arange(sources, device=g.device).unsqueeze(1) * bins  # one run of bins per source
        return torch.bincount(at.flatten(), minlength=sources * bins).view(sources, bins)

    def forward(self, u: Tensor, carried: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gated memory output [B, T, N] and the buffers after the last position [B, 2, N]."""
        out, last = self.neuron_major(neuron_major(u), carried, want_last=True)
        assert last is not None
        return batch_major(out), last

    def neuron_major(self, u: Tensor, carried: Tensor | None = None, want_last: bool = False,
                     gates: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The same for u [N, B, T] -> (out [N, B, T], buffers after the last position [B, 2, N] or None).

        `gates` [N, 4] replaces self.gates() (see Memory2.input_gates).

        out = g_s*S + g_l*L + g_u*u + g_p*up(down(L)) with S = u E_s^T and L = u E_l^T along time: two
        [N*B, T] x [T, T] GEMMs and the gated sum (GatedLeakyAverages, which also gives the decays their
        gradient). `down` mixes neurons, so it commutes with the decay matrices:
        down(L) = (W_down u) E_l^T is only [rank, B, T]; g_p is folded into the up weight. With mlp the
        path is up(GELU(W_down u + b)) instead (no decay mix; carried buffers do not enter it).
        """
        N, B, T = u.shape
        dt = u.dtype
        d = self.decays()
        E = decay_matrix(d, T)  # [2, T, T]
        g = (self.gates() if gates is None else gates).to(dt)  # [N, 4]
        flat = u.view(N * B, T)
        out = GatedLeakyAverages.apply(u, g[:, :3], d).view(N * B, T)
        low = gemm.mm(self.down.weight.to(dt), u.view(N, B * T))  # [rank, B*T]: W_down u
        z = low if self.mlp else gemm.mm(low.view(-1, T), E[1].t().to(dt))  # down(u) | down(L) [rank*B, T]
        if carried is not None:  # earlier buffers fade in as d^(t+1)
            fade = (d.view(2, 1) ** torch.arange(1, T + 1, device=u.device, dtype=d.dtype).view(1, T)).to(dt)
            c = carried.to(dt).permute(2, 0, 1)  # [N, B, 2]
            out = out + (c * g[:, :2].view(N, 1, 2)).reshape(N * B, 2) @ fade  # [N*B, 2] x [2, T]
            if not self.mlp:
                z = z + (torch.mm(self.down.weight.to(dt), c[:, :, 1]).unsqueeze(2) * fade[1]).view(-1, T)
        if self.mlp:  # the bottleneck as a GELU layer over this position's input: the nonlinear path
            z = F.gelu(z + self.proj_bias.to(dt).unsqueeze(1))
        up = self.up.weight.to(dt) * g[:, 3].unsqueeze(1)  # [N, rank], the proj gate folded in
        out = (out.view(N, B * T) + gemm.mm(up, z.view(-1, B * T))).view(N, B, T)
        last = None
        if want_last:
            last = torch.mm(flat, E[:, -1].t().to(dt)).view(N, B, 2)
            if carried is not None:
                last = last + fade[:, -1] * c
            last = last.permute(1, 2, 0)
        return out, last


class Memory2(Memory):
    """MEMORY 2: a second Memory whose input is a learned per-neuron mix of the windows and Memory's output."""

    def __init__(self, neurons: int, rank: int, **kwargs: Any) -> None:
        super().__init__(neurons, rank, **kwargs)
        self.mix_logits = nn.Parameter(torch.zeros(neurons))

    def mix(self) -> Tensor:
        """[N]: the share of the windows output in Memory 2's input (the rest is Memory's output)."""
        return torch.sigmoid(self.mix_logits)

    def readings(self, prefix: str) -> dict[str, Tensor]:
        """Memory's readings plus the mean share of the windows output in the input (`<prefix>_mix`)."""
        return {**super().readings(prefix), MEMORY_MIX.format(memory=prefix): self.mix().mean()}

    def forward(self, windows: Tensor, memory: Tensor, carried: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        mixed = self.mixed_input(neuron_major(windows), neuron_major(memory))
        return super().forward(batch_major(mixed), carried)

    def mixed_input(self, windows: Tensor, memory: Tensor) -> Tensor:
        """m*windows + (1-m)*memory in one pass, for neuron-major [N, B, T] inputs."""
        return torch.lerp(memory, windows, self.mix().to(memory.dtype).view(-1, 1, 1))

    def input_gates(self, first: Memory) -> Tensor:
        """Gates [N, 4] that make `first`, run on the windows output, return this layer's input directly.

        Memory's output is linear in its gates and its own input is the windows output, so
        m*windows + (1-m)*memory(windows) is Memory with its gates scaled by (1-m) and m added to the
        input gate: Memory's output itself is never materialised.
        """
        m = self.mix().unsqueeze(1)  # [N, 1]
        sources = torch.arange(len(Memory.SOURCES), device=m.device)
        input_column = (sources == Memory.SOURCES.index("input")).to(m.dtype)
        return (1 - m) * first.gates() + m * input_column
