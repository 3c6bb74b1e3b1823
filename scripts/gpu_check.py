#!/usr/bin/env python3
"""The prepared GPU check: everything the project claims about a GPU, measured in one go on one device.

    python scripts/gpu_check.py --out DIR            # on a machine with one CUDA GPU: about 9 minutes at most

Each part runs in its own process with its own timeout, so a hang costs that part, not the rest:

    tests       the CUDA tests and the GPU-path tests (tests/test_cuda.py, test_step_paths.py, test_precision.py)
    bench       `babyllm bench` at the default config, bf16, automatic batch: eager, then compiled
    train       a one-minute real training run of the default config (`babyllm train --minutes 1`)
    cockpit     the real cockpit, headless (Textual's test driver), training with a chat mid-run: steps/s
                beside the same Tutor alone, and the chat's tokens/s while it trains

It writes at most 8 files into DIR: summary.md and summary.json (the figures), tests.txt, bench-eager.json,
bench-compiled.json, train.txt, cockpit.json and log.txt (what the parts said on stderr). With
`--device cpu --config tiny --quick` it runs the same parts in a minute or two on a CPU (the test suite checks
the script that way); the figures are then the CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
# seconds per part (9 minutes in all on a GPU), and their --quick counterparts
TIMEOUTS = {"tests": 100, "bench-eager": 100, "bench-compiled": 150, "train": 90, "cockpit": 100}
QUICK = {"tests": 120, "bench-eager": 60, "bench-compiled": 120, "train": 60, "cockpit": 60}


def run(part: str, argv: list[str], out: Path, timeout: float, log: Path) -> dict[str, Any]:
    """One part in its own process: (exit code, seconds, stdout); a timeout ends it and says so."""
    start = time.monotonic()
    with log.open("a", encoding="utf-8") as err:
        err.write(f"\n=== {part}: {' '.join(argv)}\n")
        err.flush()
        try:
            proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
            code, stdout = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as e:
            code, stdout = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else e.stdout or ""
    seconds = time.monotonic() - start
    if out.suffix in (".txt", ".json"):
        out.write_text(stdout, encoding="utf-8")
    return {"part": part, "exit": code, "seconds": round(seconds, 1)}


def bench_figures(path: Path) -> dict[str, Any]:
    """The headline figures of a `babyllm bench --json` file (empty when the part failed)."""
    try:
        (r,) = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    t = r.get("train", {})
    return {"batch": r.get("batch"), "dtype": r.get("dtype"), "tokens_per_s": t.get("tokens_per_s"),
            "mfu_datasheet": t.get("mfu_datasheet"), "fraction_of_measured_peak": t.get("fraction_of_peak"),
            "datasheet": r.get("datasheet"), "memory_mb": r.get("memory_mb"),
            "chat_tokens_per_s": r.get("generation", {}).get("tokens_per_s")}


def train_figures(run_dir: Path) -> dict[str, Any]:
    """Steps, tokens/s and MFU (medians over the second half) of the training run's metrics.jsonl."""
    try:
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.startswith("{")]
    except OSError:
        return {}
    rows = [r for r in rows if "step" in r]
    late = rows[len(rows) // 2:] or rows
    def med(key: str) -> float | None:
        return statistics.median(r[key] for r in late if r.get(key) is not None) if late else None

    return {"steps": rows[-1]["step"] if rows else 0, "tokens_per_s": med("tokens_per_s"), "mfu": med("mfu"),
            "loss": rows[-1].get("loss") if rows else None}


def cockpit_part(args: argparse.Namespace) -> int:
    """(In its own process.) The same Tutor alone, then in the headless cockpit with a chat mid-run: steps/s of
    each over the same seconds after a warm-up, and the chat's tokens/s while training."""
    import asyncio

    from babyllm.config import load_config
    from babyllm.school.tutor import Tutor
    from tui.app import CockpitApp

    overrides = [f"train.device={args.device}", "train.save_every=0", "train.eval_every=100000",
                 "train.sample_every=100000", f"data.corpus={json.dumps(str(args.corpus))}"]
    seconds = 8.0 if args.quick else 25.0

    def steps_alone(run_dir: Path) -> float:
        import threading

        tutor = Tutor(load_config(args.config, overrides), run_dir, say=lambda _m: None)
        thread = threading.Thread(target=tutor.run)
        thread.start()
        time.sleep(seconds / 3)  # warm-up (and compile)
        s0, t0 = tutor.step_count, time.monotonic()
        time.sleep(seconds)
        rate = (tutor.step_count - s0) / (time.monotonic() - t0)
        tutor.stop()
        thread.join(120)
        return rate

    async def in_cockpit(run_dir: Path) -> dict[str, float]:
        cfg = load_config(args.config, overrides)
        app = CockpitApp(lambda publish, say: Tutor(cfg, run_dir, publish=publish, say=say),
                         chat_factory=lambda t: t.chat_session(), handle_signals=False)
        out: dict[str, float] = {}
        async with app.run_test(size=(160, 50)) as pilot:
            while app.tutor is None or app.tutor.step_count < 3:
                await pilot.pause(0.2)
            await pilot.pause(seconds / 3)
            s0, t0 = app.tutor.step_count, time.monotonic()
            await pilot.pause(seconds)
            out["steps_per_s"] = (app.tutor.step_count - s0) / (time.monotonic() - t0)
            chat = app.tutor.chat_session()  # the chat the pane uses, timed here while training goes on
            c0, step0 = time.monotonic(), app.tutor.step_count
            tokens = sum(1 for _ in chat.stream("The kettle sang and"))
            out["chat_tokens_per_s"] = tokens / (time.monotonic() - c0)
            out["chat_tokens"] = tokens
            out["steps_during_chat"] = app.tutor.step_count - step0
            await pilot.press("i", *"hello", "enter")  # and through the pane itself
            while app.chat_pane.answering:
                await pilot.pause(0.2)
            await pilot.press("escape", "q", "y")
            while app.is_running:
                await pilot.pause(0.2)
        app.join_tutor(timeout=120)
        return out

    work = Path(args.work)
    alone = steps_alone(work / "alone")
    cockpit = asyncio.run(in_cockpit(work / "cockpit"))
    cockpit["steps_per_s_alone"] = alone
    cockpit["cockpit_cost"] = 1 - cockpit["steps_per_s"] / alone if alone else None
    print(json.dumps(cockpit))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the folder for the result files")
    p.add_argument("--config", default="default")
    p.add_argument("--device", default="cuda")
    p.add_argument("--corpus", default=str(SHARED_CORPUS if SHARED_CORPUS.exists() else ""),
                   help="text to train on (default: ../shared's tinyshakespeare, else the shipped corpus)")
    p.add_argument("--quick", action="store_true", help="short parts (a CPU smoke check of this script)")
    p.add_argument("--parts", default=",".join(TIMEOUTS), help="which parts, comma-separated (default: all)")
    p.add_argument("--part", help=argparse.SUPPRESS)  # (the cockpit part runs in its own process)
    p.add_argument("--work", help=argparse.SUPPRESS)  # its run directories (never under --out: saves are big)
    args = p.parse_args()
    if args.part == "cockpit":
        return cockpit_part(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="babyllm-gpu-check-"))  # the runs' saves stay out of the results
    log = out / "log.txt"
    log.write_text("", encoding="utf-8")
    limits = QUICK if args.quick else TIMEOUTS
    py = sys.executable
    corpus = ["--corpus", args.corpus] if args.corpus else []
    env_tests = ["env", f"BABYLLM_TEST_DEVICE={'cuda' if args.device.startswith('cuda') else 'cpu'}"]
    bench = [py, "-m", "babyllm", "bench", "--config", args.config, "--device", args.device, "--dtype", "bf16",
             "--batch", "auto", "--json"]
    minutes = "0.1" if args.quick else "1"
    parts = [
        ("tests", [*env_tests, py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py",
                   "tests/test_step_paths.py", "tests/test_precision.py"], out / "tests.txt"),
        ("bench-eager", bench, out / "bench-eager.json"),
        ("bench-compiled", [*bench, "--compile"], out / "bench-compiled.json"),
        ("train", [py, "-m", "babyllm", "train", "--config", args.config, "--minutes", minutes, *corpus,
                   "--run-dir", str(work / "train"), "--set", f"train.device={args.device}"],
         out / "train.txt"),
        ("cockpit", [py, str(Path(__file__).resolve()), "--part", "cockpit", "--out", str(out), "--work", str(work),
                     "--config",
                     args.config, "--device", args.device, "--corpus", args.corpus or str(ROOT / "babyllm" / "corpora")]
         + (["--quick"] if args.quick else []), out / "cockpit.json"),
    ]
    wanted = set(args.parts.split(","))
    results = []
    for part, argv, path in (p for p in parts if p[0] in wanted):
        print(f"gpu_check: {part} (at most {limits[part]} s)", file=sys.stderr, flush=True)
        results.append(run(part, argv, path, limits[part], log))
    summary = {"machine": machine(), "parts": results, "bench_eager": bench_figures(out / "bench-eager.json"),
               "bench_compiled": bench_figures(out / "bench-compiled.json"),
               "train": train_figures(work / "train"), "cockpit": _json(out / "cockpit.json")}
    shutil.rmtree(work, ignore_errors=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "summary.md").write_text(markdown(summary), encoding="utf-8")
    print(markdown(summary))
    return 0 if all(r["exit"] == 0 for r in results) else 1


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def _json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _pct(x: Any) -> str:
    return f"{x:.1%}" if isinstance(x, int | float) else "not measured"


def _num(x: Any) -> str:
    return f"{x:,.0f}" if isinstance(x, int | float) else "not measured"


def markdown(s: dict[str, Any]) -> str:
    m = s["machine"]
    lines = [f"# GPU check: {m.get('gpu', 'no GPU')} (compute capability {m.get('capability', '-')}, "
             f"{m.get('memory_gib', '-')} GiB), torch {m['torch']}", "",
             "| part | exit | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {r['part']} | {r['exit']} | {r['seconds']} |" for r in s["parts"]]
    lines += ["", "| figure | eager | compiled |", "| --- | ---: | ---: |"]
    e, c = s["bench_eager"], s["bench_compiled"]
    for label, key, fmt in (("batch (auto)", "batch", _num), ("training tokens/s", "tokens_per_s", _num),
                            ("MFU of the datasheet peak", "mfu_datasheet", _pct),
                            ("of the peak measured in the run", "fraction_of_measured_peak", _pct),
                            ("memory MB", "memory_mb", _num), ("chat tokens/s (idle)", "chat_tokens_per_s", _num)):
        lines.append(f"| {label} | {fmt(e.get(key))} | {fmt(c.get(key))} |")
    t, k = s["train"], s["cockpit"]
    lines += ["", f"One-minute training run: {t.get('steps', 'not measured')} steps, {_num(t.get('tokens_per_s'))} "
              f"tokens/s, MFU {_pct(t.get('mfu'))} (medians of the second half), last loss {t.get('loss')}.",
              f"Cockpit: {k.get('steps_per_s', 'not measured')} steps/s in the cockpit against "
              f"{k.get('steps_per_s_alone', 'not measured')} alone (cost {_pct(k.get('cockpit_cost'))}); chat "
              f"{_num(k.get('chat_tokens_per_s'))} tokens/s while training "
              f"({k.get('steps_during_chat')} steps meanwhile)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
