"""The prepared GPU check (scripts/gpu_check.py) runs end to end: here on the CPU, its quick parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_runs_its_parts_and_writes_at_most_eight_files(tmp_path, corpus):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--config", "tiny",
                        "--quick", "--corpus", str(corpus), "--parts", "bench-eager,train"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"summary.md", "summary.json", "log.txt", "bench-eager.json", "train.txt"} <= set(files)
    summary = json.loads((out / "summary.json").read_text())
    assert [p["part"] for p in summary["parts"]] == ["bench-eager", "train"]
    assert summary["bench_eager"]["tokens_per_s"] > 0 and summary["train"]["steps"] > 0
    text = (out / "summary.md").read_text()
    assert "| bench-eager | 0 |" in text and "not measured" in text  # a CPU: no datasheet MFU, no cockpit part
