"""babyLLM: an attention-free language model (Embed -> Neurons -> Windows -> Memory -> Memory 2 -> Logits).

Every part works on all T positions at once and is causal: position t only sees tokens 0..t.
Sequence mixing (windows and memory) is expressed as small [T, T] matrices built from a handful of
learned scalars and applied to the activations as one batched matrix multiply, so training is
dominated by GEMMs rather than Python loops or memory-bound scans.

Inside `BabyLLM.run` activations are kept time-major ([T, B, N], contiguous): every sequence mix is
then ONE plain GEMM of a small [T, T]-sized matrix with a [T, B*N] matrix, with no transposed copies,
and per-neuron gates and the low-rank projection are folded into those GEMMs (same maths, reordered:
gates and right-multiplications commute with mixing along time). The modules' own `forward` methods
keep the batch-major [B, T, N] interface and call the same time-major code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babyllm.config import ModelConfig


@dataclass
class State:
    """What a conversation carries between calls: recent neuron activations and both memories' buffers."""

    pos: int  # tokens seen so far (for the position embedding)
    acts: Tensor  # [B, H, N] the last <= context neuron activations (the windows' history)
    memory1: Tensor  # [B, 2, N] short- and long-term buffers of Memory
    memory2: Tensor  # [B, 2, N] the same for Memory 2


@dataclass
class Pass:
    """One forward pass: logits, the state to carry on from, and the neuron activations (for stats)."""

    logits: Tensor  # [B, T, V]
    state: State | None
    acts: Tensor  # [B, T, N]


class Embed(nn.Module):
    """EMBED: token embedding plus learned absolute position embedding -> [B, T, D]."""

    def __init__(self, vocab: int, dim: int, context: int) -> None:
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(context, dim)
        nn.init.normal_(self.tokens.weight, std=1.0)
        nn.init.normal_(self.positions.weight, std=0.1)

    def forward(self, ids: Tensor, start: int = 0) -> Tensor:
        # Past the context (long chats) every token shares the last position's embedding.
        pos = torch.arange(start, start + ids.shape[1], device=ids.device).clamp_(max=self.context - 1)
        return self.tokens(ids) + self.positions(pos)

    def time_major(self, ids: Tensor, start: int = 0) -> Tensor:
        """The same embedding for ids [B, T], laid out time-major -> [T, B, D] (contiguous)."""
        pos = torch.arange(start, start + ids.shape[1], device=ids.device).clamp_(max=self.context - 1)
        return self.tokens(ids.t()) + self.positions(pos).unsqueeze(1)


class Neurons(nn.Module):
    """NEURON layer: N D-dimensional neurons, each giving one GELU activation per token -> [B, T, N]."""

    def __init__(self, dim: int, neurons: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        # Scaled so every pre-activation starts with unit variance whatever D is.
        self.weight = nn.Parameter(torch.randn(neurons, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(neurons))

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(F.linear(self.norm(x), self.weight, self.bias))


class Windows(nn.Module):
    """WINDOWS: K causal means of the activations over learnable window sizes, mixed by softmax weightings."""

    def __init__(self, sizes: list[float], context: int) -> None:
        super().__init__()
        self.context = context
        # size = 1 + (context - 1) * sigmoid(logit): always a valid, differentiable size in [1, context].
        frac = (torch.tensor(sizes, dtype=torch.float32) - 1) / (context - 1)
        self.size_logits = nn.Parameter(torch.logit(frac.clamp(1e-4, 1 - 1e-4)))
        self.weight_logits = nn.Parameter(torch.zeros(len(sizes)))

    def sizes(self) -> Tensor:
        """Current window sizes in tokens [K] (fractional)."""
        return 1 + (self.context - 1) * torch.sigmoid(self.size_logits)

    def weightings(self) -> Tensor:
        """Current window weightings [K], summing to 1."""
        return torch.softmax(self.weight_logits, dim=0)

    def mixing_matrix(self, rows: int, cols: int) -> Tensor:
        """M [rows, cols] such that M @ acts gives the weighted window means of the last `rows` positions.

        Window k at position t with size w = n + f (n whole tokens, fraction f) is
            (P[t+1] - P[t+1-n] + f * a[t-n]) / (n + f)        with P the prefix sum of a,
        or the plain mean of positions 0..t where the window reaches past the start. Differencing a
        prefix sum of the activations cancels catastrophically in bf16, so we difference the prefix-sum
        operator instead: row t of M is the same linear map, built exactly for all K windows at once.
        The fraction f keeps a gradient with respect to every size.
        """
        w = self.sizes()
        n = torch.floor(w.detach())
        f = w - n
        t = torch.arange(cols - rows, cols, device=w.device, dtype=w.dtype).view(1, rows, 1)
        s = torch.arange(cols, device=w.device, dtype=w.dtype).view(1, 1, cols)
        lag = t - s  # how many positions back column s is from row t
        n3, f3 = n.view(-1, 1, 1), f.view(-1, 1, 1)
        full = ((lag >= 0) & (lag < n3)).to(w.dtype)
        edge = (lag == n3).to(w.dtype) * f3  # the partly-included oldest position
        count = torch.minimum(n3, t + 1) + f3 * (t >= n3).to(w.dtype)
        per_window = (full + edge) / count  # [K, rows, cols]
        return torch.einsum("k,krc->rc", self.weightings(), per_window)

    def forward(self, acts: Tensor, rows: int) -> Tensor:
        """Mixed window means [B, rows, N] for the last `rows` positions of `acts` [B, H, N]."""
        return self.time_major(acts.transpose(0, 1).contiguous(), rows).transpose(0, 1)

    def time_major(self, acts: Tensor, rows: int) -> Tensor:
        """The same for time-major acts [H, B, N] -> [rows, B, N]: one [rows, H] x [H, B*N] GEMM."""
        H, B, N = acts.shape
        M = self.mixing_matrix(rows, H).to(acts.dtype)
        return torch.mm(M, acts.reshape(H, B * N)).view(rows, B, N)


def decay_matrix(decays: Tensor, length: int) -> Tensor:
    """E [len(decays), T, T] with E[j, t, s] = (1 - d_j) * d_j^(t - s) for s <= t, else 0."""
    t = torch.arange(length, device=decays.device, dtype=decays.dtype)
    lag = (t.view(-1, 1) - t.view(1, -1)).clamp_(min=0)  # clamped first so exp never overflows
    mask = torch.tril(torch.ones(length, length, device=decays.device, dtype=decays.dtype))
    d = decays.view(-1, 1, 1)
    return (1 - d) * torch.exp(lag * torch.log(d)) * mask


class Memory(nn.Module):
    """MEMORY: short- and long-term leaky averages along the sequence, mixed per neuron by learned gates.

    S_t = d_s * S_(t-1) + (1 - d_s) * u_t and likewise L with d_l, computed for all t at once as a
    [2T, T] decay matrix times u. Per-neuron softmax gates mix four sources: S, L, the input u itself,
    and a projected memory (L through a low-rank bottleneck, the only cross-neuron path here).
    """

    SOURCES = ("short", "long", "input", "proj")

    def __init__(self, neurons: int, rank: int, decay_short: float = 0.5, decay_long: float = 0.95) -> None:
        super().__init__()
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

    def forward(self, u: Tensor, carried: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Gated memory output [B, T, N] and the buffers after the last position [B, 2, N]."""
        out, last = self.time_major(u.transpose(0, 1).contiguous(), carried, want_last=True)
        assert last is not None
        return out.transpose(0, 1), last

    def time_major(self, u: Tensor, carried: Tensor | None = None, want_last: bool = False) -> tuple[Tensor, Tensor | None]:
        """The same for time-major u [T, B, N] -> (out [T, B, N], buffers after the last position [B, 2, N] or None).

        out = g_s*S + g_l*L + g_u*u + g_p*up(down(L)) with S = E_s u and L = E_l u (E: [T, T] decay
        matrices). Gates are per neuron and `down` acts on neurons, so both commute with E (which mixes
        positions): g_s*(E_s u) + g_l*(E_l u) = [E_s E_l] @ [g_s*u; g_l*u], one [T, 2T] x [2T, B*N] GEMM
        whose accumulator starts from g_u*u; down(L) = E_l (u W_down^T) is only [T, B, rank]; g_p is
        folded into the up weight. S and L are never materialised (only their last row when asked).
        """
        T, B, N = u.shape
        dt = u.dtype
        d = self.decays()
        E = decay_matrix(d, T)  # [2, T, T]
        g = self.gates().to(dt)  # [N, 4]
        g2 = g.t().contiguous()  # [4, N]
        flat = u.reshape(T * B, N)
        stacked = u.unsqueeze(0) * g2[:2].view(2, 1, 1, N)  # [2, T, B, N] = [g_s*u; g_l*u]
        EsEl = E.permute(1, 0, 2).reshape(T, 2 * T).to(dt)
        out = torch.addmm((flat * g2[2]).view(T, B * N), EsEl, stacked.view(2 * T, B * N))
        low = F.linear(flat, self.down.weight).view(T, B * self.down.out_features)  # u W_down^T
        z = torch.mm(E[1].to(dt), low).view(T * B, -1)  # down(L)
        if carried is not None:  # earlier buffers fade in as d^(t+1)
            fade = (d.view(2, 1) ** torch.arange(1, T + 1, device=u.device, dtype=d.dtype).view(1, T)).to(dt)
            c = carried.to(dt)  # [B, 2, N]
            gc = (c * g2[:2].unsqueeze(0)).transpose(0, 1).reshape(2, B * N)  # [g_s*S0; g_l*L0]
            out = out + fade.t() @ gc  # [T, 2] x [2, B*N]
            z = z + (fade[1].view(T, 1, 1) * F.linear(c[:, 1], self.down.weight).unsqueeze(0)).view(T * B, -1)
        out = torch.addmm(out.view(T * B, N), z, (self.up.weight * g2[3].unsqueeze(1)).t()).view(T, B, N)
        last = None
        if want_last:
            last = torch.mm(E[:, -1].to(dt), u.reshape(T, B * N)).view(2, B, N)
            if carried is not None:
                last = last + fade[:, -1].view(2, 1, 1) * carried.to(dt).transpose(0, 1)
            last = last.transpose(0, 1)
        return out, last


class Memory2(Memory):
    """MEMORY 2: a second Memory whose input is a learned per-neuron mix of the windows and Memory's output."""

    def __init__(self, neurons: int, rank: int) -> None:
        super().__init__(neurons, rank)
        self.mix_logits = nn.Parameter(torch.zeros(neurons))

    def mix(self) -> Tensor:
        """[N]: the share of the windows output in Memory 2's input (the rest is Memory's output)."""
        return torch.sigmoid(self.mix_logits)

    def forward(self, windows: Tensor, memory: Tensor, carried: Tensor | None = None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return super().forward(self.mixed_input(windows, memory), carried)

    def mixed_input(self, windows: Tensor, memory: Tensor) -> Tensor:
        """m*windows + (1-m)*memory in one pass (any layout with neurons last)."""
        return torch.lerp(memory, windows, self.mix().to(memory.dtype))


class Logits(nn.Module):
    """LOGIT layer: LayerNorm, then a linear map from the neurons to a score per vocabulary token."""

    def __init__(self, neurons: int, vocab: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(neurons)
        self.linear = nn.Linear(neurons, vocab)
        # Small so an untrained model's loss starts near ln(vocab).
        nn.init.normal_(self.linear.weight, std=0.2 / math.sqrt(neurons))
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.norm(x))


class BabyLLM(nn.Module):
    """The whole model: token ids [B, T] -> next-token logits [B, T, V] for every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg.vocab, cfg.embed, cfg.context)
        self.neurons = Neurons(cfg.embed, cfg.neurons)
        self.windows = Windows(cfg.windows, cfg.context)
        self.memory1 = Memory(cfg.neurons, cfg.memory_rank)
        self.memory2 = Memory2(cfg.neurons, cfg.memory_rank)
        self.logits = Logits(cfg.neurons, cfg.vocab)

    def forward(self, ids: Tensor) -> Tensor:
        return self.run(ids).logits

    def run(self, ids: Tensor, state: State | None = None, keep_state: bool = False) -> Pass:
        """Forward over ids [B, T], continuing from `state` if given; returns the new state if asked."""
        T = ids.shape[1]
        acts = self.neurons(self.embed.time_major(ids, start=state.pos if state else 0))  # [T, B, N]
        history = torch.cat([state.acts.transpose(0, 1).to(acts.dtype), acts], dim=0) if state else acts
        win = self.windows.time_major(history, rows=T)
        c1 = state.memory1 if state else None
        c2 = state.memory2 if state else None
        mem1, carried1 = self.memory1.time_major(win, c1, want_last=keep_state)
        mem2, carried2 = self.memory2.time_major(self.memory2.mixed_input(win, mem1), c2, want_last=keep_state)
        logits = self.logits(mem2).transpose(0, 1)  # a [B, T, V] view of time-major logits
        new_state = None
        if keep_state:
            assert carried1 is not None and carried2 is not None
            pos = (state.pos if state else 0) + T
            kept = history[-self.cfg.context :].transpose(0, 1).detach()
            new_state = State(pos, kept, carried1.detach(), carried2.detach())
        return Pass(logits, new_state, acts.transpose(0, 1))

    @torch.no_grad()
    def readings(self) -> dict[str, float]:
        """The learned mixing scalars the cockpit shows: window weightings and sizes, decays, gates, mix."""
        out: dict[str, float] = {}
        for k, (w, s) in enumerate(zip(self.windows.weightings().tolist(), self.windows.sizes().tolist())):
            out[f"window_weight_{k}"] = w
            out[f"window_size_{k}"] = s
        for name, mem in (("mem1", self.memory1), ("mem2", self.memory2)):
            short, long = mem.decays().tolist()
            out[f"{name}_decay_short"], out[f"{name}_decay_long"] = short, long
            for src, g in zip(Memory.SOURCES, mem.gates().mean(0).tolist()):
                out[f"{name}_gate_{src}"] = g
        out["mem2_mix"] = self.memory2.mix().mean().item()
        return out

    def param_counts(self) -> dict[str, int]:
        """Parameters per part, in model order."""
        return {name: sum(p.numel() for p in part.parameters()) for name, part in self.named_children()}

    def forward_macs_per_token(self) -> dict[str, int]:
        """Multiply-accumulates per token of one forward pass at full context, per part (dense GEMMs as run)."""
        c = self.cfg
        T, N = c.context, c.neurons
        memory = 2 * T * N + 2 * N * c.memory_rank + T * c.memory_rank
        return {
            "embed": 0,
            "neurons": c.embed * N,
            "windows": T * N,
            "memory1": memory,
            "memory2": memory,
            "logits": N * c.vocab,
        }

    def train_flops_per_token(self) -> int:
        """Training FLOPs per token: 2 per MAC forward, twice that backward."""
        return 6 * sum(self.forward_macs_per_token().values())


def next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of every position's prediction against the next token (computed in fp32)."""
    if logits.dim() == 3 and not logits.is_contiguous() and logits.transpose(0, 1).is_contiguous():
        # BabyLLM's logits are a [B, T, V] view of time-major memory: take the mean in that order (no copy).
        logits, targets = logits.transpose(0, 1), targets.transpose(0, 1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
