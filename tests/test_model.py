"""The model: causality, vectorised parts against slow reference loops, gradients, and learning."""

import math

import pytest
import torch
from causal import assert_causal

from babyllm import BabyLLM, load_config
from babyllm.model.memory import GatedLeakyAverages, Memory, Memory2
from babyllm.model.network import Windows, next_token_loss

from memories import stir


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    return cfg, BabyLLM(cfg.model)


def reference_windows(acts: torch.Tensor, sizes: list[float], weights: list[float]) -> torch.Tensor:
    """Slow and obvious: for every position and window, average the last n whole positions plus f of the next."""
    B, T, N = acts.shape
    out = torch.zeros(B, T, N, dtype=torch.float64)
    for t in range(T):
        for w, c in zip(sizes, weights, strict=True):
            n, f = math.floor(w), w - math.floor(w)
            total, count = torch.zeros(B, N, dtype=torch.float64), 0.0
            for j in range(n):
                if t - j >= 0:
                    total += acts[:, t - j].double()
                    count += 1
            if t - n >= 0 and f > 0:
                total += f * acts[:, t - n].double()
                count += f
            out[:, t] += c * total / count
    return out


def reference_memory(mem: Memory, u: torch.Tensor, carried: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow and obvious: the leaky-average recurrences one position at a time, then the gated mix."""
    d_s, d_l = mem.decays()
    B, T, N = u.shape
    S = carried[:, 0].clone() if carried is not None else torch.zeros(B, N, dtype=u.dtype)
    L = carried[:, 1].clone() if carried is not None else torch.zeros(B, N, dtype=u.dtype)
    g = mem.gates()
    outs = []
    for t in range(T):
        S = d_s * S + (1 - d_s) * u[:, t]
        L = d_l * L + (1 - d_l) * u[:, t]
        if mem.mlp:  # a GELU bottleneck over this position's input  # noqa: SIM108 (each branch explained)
            proj = mem.up(torch.nn.functional.gelu(mem.down(u[:, t]) + mem.proj_bias))
        else:  # a linear bottleneck over the long-term buffer
            proj = mem.up(mem.down(L))
        outs.append(g[:, 0] * S + g[:, 1] * L + g[:, 2] * u[:, t] + g[:, 3] * proj)
    return torch.stack(outs, dim=1), torch.stack([S, L], dim=1)


def test_causal_at_every_position(tiny):
    cfg, model = tiny
    assert_causal(model, cfg.model.vocab, cfg.model.context)


@pytest.mark.parametrize("sizes", [[1.0, 2.0, 3.0], [1.5, 2.25, 4.9, 7.0], [2.5, 11.75, 16.0]])
def test_windows_match_reference_loop(sizes):
    torch.manual_seed(1)
    T, N = 16, 5
    win = Windows(sizes, context=T)
    with torch.no_grad():
        win.weight_logits.normal_()
    acts = torch.randn(2, T, N)
    got = win(acts, rows=T)
    want = reference_windows(acts, win.sizes().tolist(), win.weightings().tolist())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_grouped_windows_match_reference_loop_per_group():
    """Each group of neurons mixes the same windows with its own weightings."""
    torch.manual_seed(4)
    T, N, G = 12, 6, 3
    win = Windows([1.0, 2.5, 7.0], context=T, groups=G)
    with torch.no_grad():
        win.weight_logits.normal_()
    acts = torch.randn(2, T, N)
    got = win(acts, rows=T)
    w, per = win.weightings(), N // G
    want = torch.cat([reference_windows(acts[:, :, g * per:(g + 1) * per], win.sizes().tolist(), w[g].tolist())
                      for g in range(G)], dim=2)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_windows_last_rows_match_full_pass():
    torch.manual_seed(2)
    win = Windows([1.5, 3.3, 6.0], context=16)
    acts = torch.randn(1, 12, 4)
    torch.testing.assert_close(win(acts, rows=5), win(acts, rows=12)[:, -5:])


PROJ_KINDS = [dict(mlp=False), dict(mlp=True)]


@pytest.mark.parametrize("proj", PROJ_KINDS)
@pytest.mark.parametrize("carry", [False, True])
def test_memory_matches_reference_loop(carry, proj):
    torch.manual_seed(3)
    mem = Memory(neurons=6, rank=3, decay_short=0.3, decay_long=0.9, **proj)
    stir(mem)
    u = torch.randn(2, 10, 6)
    carried = torch.randn(2, 2, 6) if carry else None
    got, got_state = mem(u, carried)
    want, want_state = reference_memory(mem, u, carried)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_state, want_state, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("proj", PROJ_KINDS)
@pytest.mark.parametrize("carry", [False, True])
def test_memory_gradients_match_reference_loop(carry, proj):
    """Every gradient (input, decays, gates, projections) against autograd through the plain recurrence."""
    torch.manual_seed(5)
    mem = Memory(neurons=6, rank=3, decay_short=0.3, decay_long=0.9, **proj).double()
    stir(mem)
    u = torch.randn(2, 10, 6, dtype=torch.float64)
    carried = torch.randn(2, 2, 6, dtype=torch.float64) if carry else None
    w_out, w_state = torch.randn(2, 10, 6, dtype=torch.float64), torch.randn(2, 2, 6, dtype=torch.float64)

    def gradients(run):
        x = u.clone().requires_grad_()
        out, state = run(x)
        inputs = [x, *mem.parameters()]
        return torch.autograd.grad((out * w_out).sum() + (state * w_state).sum(), inputs)

    got = gradients(lambda x: mem(x, carried))
    want = gradients(lambda x: reference_memory(mem, x, carried))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_gated_leaky_averages_gradcheck():
    """The hand-written backward (closed-form decay gradient) against finite differences."""
    torch.manual_seed(6)
    u = torch.randn(3, 2, 7, dtype=torch.float64, requires_grad=True)
    gates = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    decays = torch.tensor([0.4, 0.85], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GatedLeakyAverages.apply, (u, gates, decays))


def test_memory2_input_is_learned_mix():
    torch.manual_seed(4)
    m2 = Memory2(neurons=4, rank=2)
    with torch.no_grad():
        m2.mix_logits.normal_()
    a, b = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    mix = m2.mix()
    torch.testing.assert_close(m2(a, b)[0], Memory.forward(m2, mix * a + (1 - mix) * b)[0])


def test_gradient_reaches_every_window_size_and_decay(tiny):
    cfg, model = tiny
    ids = torch.randint(0, cfg.model.vocab, (4, cfg.model.context + 1))
    next_token_loss(model(ids[:, :-1]), ids[:, 1:]).backward()
    assert (model.windows.size_logits.grad.abs() > 0).all()
    assert (model.windows.weight_logits.grad.abs() > 0).all()
    for mem in (model.memory1, model.memory2):
        assert (mem.decay_logits.grad.abs() > 0).all()
        assert (mem.gate_logits.grad.abs() > 0).any()


@pytest.mark.parametrize("name", ["tiny", "cpu"])
def test_untrained_loss_near_ln_vocab(name):
    torch.manual_seed(0)
    cfg = load_config(name)
    model = BabyLLM(cfg.model)
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context + 1))
    loss = next_token_loss(model(ids[:, :-1]), ids[:, 1:]).item()
    assert abs(loss - math.log(cfg.model.vocab)) < 0.1 * math.log(cfg.model.vocab)


def test_fifty_steps_lower_loss_on_repeated_batch(tiny):
    cfg, model = tiny
    ids = torch.randint(0, cfg.model.vocab, (4, cfg.model.context + 1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = next_token_loss(model(ids[:, :-1]), ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_carried_state_matches_full_pass(tiny):
    cfg, model = tiny
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context))
    full = model(ids)
    first = model.run(ids[:, :5], keep_state=True)
    second = model.run(ids[:, 5:9], state=first.state, keep_state=True)
    pieces = [first.logits, second.logits]
    state = second.state
    for t in range(9, ids.shape[1]):  # then one token at a time, as generation does
        step = model.run(ids[:, t : t + 1], state=state, keep_state=True)
        pieces.append(step.logits)
        state = step.state
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)
    assert state.pos == ids.shape[1] and state.acts.shape[-1] == cfg.model.context


def test_bf16_autocast_forward_close_to_fp32(tiny):
    cfg, model = tiny
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(ids).float()
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low, model(ids), rtol=0.1, atol=0.1)


def test_readings_and_counts(tiny):
    cfg, model = tiny
    r = model.readings()
    K = len(cfg.model.windows)
    assert sum(r[f"window_weight_{k}"] for k in range(K)) == pytest.approx(1.0)
    assert [r[f"window_size_{k}"] for k in range(K)] == pytest.approx(cfg.model.windows, rel=1e-3)
    assert 0 < r["mem1_decay_short"] < r["mem1_decay_long"] < 1
    counts = model.param_counts()
    assert list(counts) == ["embed", "neurons", "windows", "memory1", "memory2", "logits"]
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert model.train_flops_per_token() > 0


def test_fused_pass_equals_the_parts_composed_plainly(tiny):
    """run() folds Memory 2's input mix into Memory's gates; the parts' own forwards do it the plain way."""
    cfg, model = tiny
    stir(model.memory1, model.memory2)
    with torch.no_grad():
        model.memory2.mix_logits.normal_()
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context))
    acts = model.neurons(model.embed(ids))
    win = model.windows(acts, rows=ids.shape[1])
    mem1, _ = model.memory1(win)
    mem2, _ = model.memory2(win, mem1)
    torch.testing.assert_close(model(ids), model.logits(mem2), rtol=1e-4, atol=1e-5)
