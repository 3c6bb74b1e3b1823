"""babyLLM: an attention-free language model (Embed -> Neurons -> Windows -> Memory -> Memory 2 -> Logits).

Every part works on all T positions at once and is causal: position t only sees tokens 0..t.
Sequence mixing (windows and memory) is expressed as small [T, T] matrices built from a handful of
learned scalars and applied to the activations as one matrix multiply, so training is dominated by
GEMMs rather than Python loops or memory-bound scans.

Inside `BabyLLM.run` activations are kept neuron-major ([N, B, T], contiguous, time last): every
sequence mix is then ONE plain GEMM of a tall [N*B, T] matrix with a small [T, T]-sized one, the shape
BLAS runs near its peak (time-major [T, T] x [T, B*N] measured at under half of it on a 2-core CPU).
Per-neuron gates scale whole rows and the low-rank projections act on the leading dimension, so both
commute with mixing along time and are applied on whichever side is cheaper (same maths, reordered).
The modules' own `forward` methods keep the plain batch-major [B, T, N] interface and are what the
tests check against slow reference loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from babyllm.config import ModelConfig
from babyllm.model import gemm
from babyllm.model.layout import batch_major, neuron_major
from babyllm.model.memory import Memory, Memory2
from babyllm.stats import (
    MEMORIES,
    MEMORY_GATE,
    WINDOW_SIZE,
    WINDOW_WEIGHT,
)


@dataclass
class State:
    """What a conversation carries between calls: recent neuron activations and both memories' buffers."""

    pos: int  # tokens seen so far (for the position embedding)
    acts: Tensor  # [N, B, H] the last <= context neuron activations (the windows' history), neuron-major
    memory1: Tensor  # [B, 2, N] short- and long-term buffers of Memory
    memory2: Tensor  # [B, 2, N] the same for Memory 2
    embedded: Tensor | None = None  # [B, D] the last position's embedding (the token shift's previous token)


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


class Neurons(nn.Module):
    """NEURON layer: N D-dimensional neurons, each giving one GELU activation per token -> [B, T, N].

    With `shift` (model.token_shift) each position's input is first blended with the previous position's,
    channel by channel, by an amount that depends on the token itself (a data-gated token shift, as in RWKV):
    x'_t = x_t + mu_t * (x_(t-1) - x_t), mu_t = sigmoid(m + tanh(x_t A) B) with a rank-SHIFT_RANK A, B. So a
    neuron's nonlinearity sees a token and the one before it (an n-gram), which the sequence mixing after it,
    linear in the activations, cannot make. `activation` "relu2" is ReLU squared in place of GELU.
    """

    SHIFT_RANK = 16
    SHIFT_START = -2.0  # mu's logit at first: mostly the token itself (sigmoid(-2) = 0.12)

    def __init__(self, dim: int, neurons: int, shift: bool = False, activation: str = "gelu") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        # Scaled so every pre-activation starts with unit variance whatever D is.
        self.weight = nn.Parameter(torch.randn(neurons, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(neurons))
        self.activation = activation
        self.shift = shift
        if shift:
            self.shift_logit = nn.Parameter(torch.full((dim,), self.SHIFT_START))
            self.shift_down = nn.Parameter(torch.randn(dim, self.SHIFT_RANK) / math.sqrt(dim))
            self.shift_up = nn.Parameter(torch.zeros(self.SHIFT_RANK, dim))  # the data's say starts at nothing

    def forward(self, x: Tensor) -> Tensor:
        return batch_major(self.neuron_major(x))

    def shifted(self, x: Tensor, before: Tensor | None = None) -> Tensor:
        """x [B, T, D] with each position blended with the one before it (`before` [B, D]: the position before the
        first, from a conversation's state; zeros at a sequence's start)."""
        first = before.to(x.dtype).unsqueeze(1) if before is not None else torch.zeros_like(x[:, :1])
        prev = torch.cat([first, x[:, :-1]], dim=1)
        mu = torch.sigmoid(self.shift_logit + torch.tanh(x @ self.shift_down.to(x.dtype)) @ self.shift_up.to(x.dtype))
        return torch.lerp(x, prev, mu.to(x.dtype))

    def neuron_major(self, x: Tensor, before: Tensor | None = None) -> Tensor:
        """The same activations for x [B, T, D], laid out [N, B, T]: W @ norm(x)^T is one GEMM."""
        B, T, D = x.shape
        if self.shift:
            x = self.shifted(x, before)
        pre = gemm.addmm(self.bias.unsqueeze(1), self.weight, self.norm(x).reshape(B * T, D).t())
        return (F.relu(pre).square() if self.activation == "relu2" else F.gelu(pre)).view(-1, B, T)


class Windows(nn.Module):
    """WINDOWS: K causal means of the activations over learnable window sizes, mixed by softmax weightings."""

    def __init__(self, sizes: list[float], context: int, groups: int = 1) -> None:
        super().__init__()
        self.context = context
        # size = 1 + (context - 1) * sigmoid(logit): always a valid, differentiable size in [1, context].
        frac = (torch.tensor(sizes, dtype=torch.float32) - 1) / (context - 1)
        self.size_logits = nn.Parameter(torch.logit(frac.clamp(1e-4, 1 - 1e-4)))
        # One softmax of weightings per group of neurons. With several groups, group g starts leaning
        # towards window g mod K, so the neurons begin with a spread of time scales rather than one.
        K = len(sizes)
        lean = torch.zeros(groups, K)
        if groups > 1:
            lean[torch.arange(groups), torch.arange(groups) % K] = 2.0
        self.weight_logits = nn.Parameter(lean if groups > 1 else torch.zeros(K))
        self.groups = groups

    def sizes(self) -> Tensor:
        """Current window sizes in tokens [K] (fractional)."""
        return 1 + (self.context - 1) * torch.sigmoid(self.size_logits)

    def weightings(self) -> Tensor:
        """Current window weightings, summing to 1: [K], or [groups, K] with several groups."""
        return torch.softmax(self.weight_logits, dim=-1)

    def readings(self) -> dict[str, Tensor]:
        """Each window's weighting (with groups: the groups' mean) and size, named by the stat registry (on the
        device: read them with BabyLLM.readings)."""
        weightings = self.weightings()
        weightings = weightings.mean(0) if weightings.dim() == 2 else weightings
        out: dict[str, Tensor] = {}
        for k, (w, s) in enumerate(zip(weightings, self.sizes(), strict=True)):
            out[WINDOW_WEIGHT.format(i=k)] = w
            out[WINDOW_SIZE.format(i=k)] = s
        return out

    def mixing_matrix(self, rows: int, cols: int) -> Tensor:
        """M [rows, cols] ([groups, rows, cols] with groups) such that M @ acts gives the weighted window
        means of the last `rows` positions.

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
        w = self.weightings()
        return torch.einsum("...k,krc->...rc", w, per_window)

    def forward(self, acts: Tensor, rows: int) -> Tensor:
        """Mixed window means [B, rows, N] for the last `rows` positions of `acts` [B, H, N]."""
        return batch_major(self.neuron_major(neuron_major(acts), rows))

    def neuron_major(self, acts: Tensor, rows: int) -> Tensor:
        """The same for acts [N, B, H] -> [N, B, rows]: one [N*B, H] x [H, rows] GEMM (a batch of one per
        group of N/groups consecutive neurons with several groups)."""
        N, B, H = acts.shape
        M = self.mixing_matrix(rows, H).to(acts.dtype)
        if self.groups == 1:
            return gemm.mm(acts.reshape(N * B, H), M.t()).view(N, B, rows)
        return torch.bmm(acts.reshape(self.groups, -1, H), M.transpose(1, 2)).view(N, B, rows)


class Logits(nn.Module):
    """LOGIT layer: LayerNorm, then a linear map from the neurons to a score per vocabulary token."""

    def __init__(self, neurons: int, vocab: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(neurons)
        self.linear = nn.Linear(neurons, vocab)
        # Small so an untrained model's loss starts near ln(vocab).
        nn.init.normal_(self.linear.weight, std=0.2 / math.sqrt(neurons))
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, dropout: float = 0.0) -> Tensor:
        x = self.norm(x)
        if dropout:
            x = F.dropout(x, dropout)
        if x.dim() == 2:  # the model's path (oneDNN for fp32 on CPU where chosen)
            return gemm.linear(x, self.linear.weight, self.linear.bias)
        return self.linear(x)


class BabyLLM(nn.Module):
    """The whole model: token ids [B, T] -> next-token logits [B, T, V] for every position."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg.vocab, cfg.embed, cfg.context)
        self.neurons = Neurons(cfg.embed, cfg.neurons, shift=cfg.token_shift, activation=cfg.activation)
        self.windows = Windows(cfg.windows, cfg.context, cfg.window_groups)
        self.memory1 = Memory(cfg.neurons, cfg.memory_rank, mlp=cfg.memory_mlp)
        self.memory2 = Memory2(cfg.neurons, cfg.memory_rank, mlp=cfg.memory_mlp)
        self.logits = Logits(cfg.neurons, cfg.vocab)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> BabyLLM:
        """The model a `babyllm export` folder holds (config.json, model.safetensors), in eval mode on `device`;
        its tokenizer: babyllm.model.pretrained.load_tokenizer(folder)."""
        from babyllm.model.pretrained import build

        return build(cls, folder, device)

    def forward(self, ids: Tensor) -> Tensor:
        return self.run(ids).logits

    def run(self, ids: Tensor, state: State | None = None, keep_state: bool = False, train: bool = False) -> Pass:
        """Forward over ids [B, T], continuing from `state` if given; returns the new state if asked.

        `train` turns on dropout (a training step's forward); every other caller gets the plain model.
        """
        B, T = ids.shape
        drop = self.cfg.dropout if train else 0.0
        embedded = self.embed(ids, start=state.pos if state else 0)  # [B, T, D]
        acts = self.neurons.neuron_major(embedded, state.embedded if state else None)  # [N, B, T]
        if drop:
            acts = F.dropout(acts, drop)
        history = torch.cat([state.acts.to(acts.dtype), acts], dim=2) if state else acts
        win = self.windows.neuron_major(history, rows=T)
        c1 = state.memory1 if state else None
        c2 = state.memory2 if state else None
        gates = self.memory2.input_gates(self.memory1)
        mem2_in, carried1 = self.memory1.neuron_major(win, c1, want_last=keep_state, gates=gates)
        mem2, carried2 = self.memory2.neuron_major(mem2_in, c2, want_last=keep_state)
        # Back to tokens x neurons for the LayerNorm and the vocabulary GEMM: one explicit transposed copy
        # (measured cheaper than LayerNorm on the transposed view, which copies in both passes).
        logits = self.logits(mem2.view(-1, B * T).t().contiguous(), drop).view(B, T, -1)
        new_state = None
        if keep_state:
            assert carried1 is not None and carried2 is not None
            pos = (state.pos if state else 0) + T
            kept = history[:, :, -self.cfg.context :].detach()
            new_state = State(pos, kept, carried1.detach(), carried2.detach(), embedded[:, -1].detach())
        return Pass(logits, new_state, batch_major(acts))

    @torch.no_grad()
    def reading_values(self) -> tuple[list[str], Tensor]:
        """The learned mixing scalars the cockpit shows, as each part declares them (see babyllm.stats): their
        names, and their values as one fp32 tensor on the device (read it when convenient: no host sync here)."""
        memory1, memory2 = MEMORIES
        parts = {**self.windows.readings(), **self.memory1.readings(memory1), **self.memory2.readings(memory2)}
        return list(parts), torch.stack([v.float() for v in parts.values()])

    def readings(self) -> dict[str, float]:
        """reading_values on the host: name -> value."""
        names, values = self.reading_values()
        return dict(zip(names, values.tolist(), strict=True))

    @torch.no_grad()
    def gate_counts(self, bins: int) -> Tensor:
        """[memories, sources, bins]: each memory's per-neuron gates as histograms, on the device."""
        return torch.stack([self.memory1.gate_histogram(bins), self.memory2.gate_histogram(bins)])

    @staticmethod
    def gate_histograms_from(counts: list[list[list[int]]]) -> dict[str, tuple[int, ...]]:
        """gate_counts read on the host, keyed as their mean's stat (e.g. mem1_gate_short)."""
        return {MEMORY_GATE.format(memory=m, source=src): tuple(row)
                for m, rows in zip(MEMORIES, counts, strict=True)
                for src, row in zip(Memory.SOURCES, rows, strict=True)}

    def gate_histograms(self, bins: int) -> dict[str, tuple[int, ...]]:
        """Each memory's per-neuron gates as histograms (keyed as their mean's stat, e.g. mem1_gate_short)."""
        return self.gate_histograms_from(self.gate_counts(bins).tolist())

    def param_counts(self) -> dict[str, int]:
        """Parameters per part, in model order."""
        return {name: sum(p.numel() for p in part.parameters()) for name, part in self.named_children()}

    def forward_macs_per_token(self) -> dict[str, int]:
        """Multiply-accumulates per token of one forward pass at full context, per part (dense GEMMs as run)."""
        c = self.cfg
        T, N = c.context, c.neurons
        memory = 2 * T * N + 2 * N * c.memory_rank + (0 if c.memory_mlp else T * c.memory_rank)
        return {
            "embed": 0,
            "neurons": c.embed * N + (2 * c.embed * Neurons.SHIFT_RANK if c.token_shift else 0),
            "windows": T * N,
            "memory1": memory,
            "memory2": memory,
            "logits": N * c.vocab,
        }

    def train_flops_per_token(self) -> int:
        """Training FLOPs per token as run: 2 per MAC forward, twice that backward (input and weight
        gradients), except the memories' four decay mixes, which have no weight-gradient GEMM (their
        decays' gradient is a few dot products per neuron, see GatedLeakyAverages)."""
        c = self.cfg
        decay_mixes = 2 * 2 * c.context * c.neurons  # MACs per token: two mixes in each memory
        return 6 * sum(self.forward_macs_per_token().values()) - 2 * decay_mixes


def next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of every position's prediction against the next token (computed in fp32)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
