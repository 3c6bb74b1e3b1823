"""Each config is measured in a fresh child process: its memory peak is its own, and no allocator state carries over."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from babyllm.commands.bench.measure import measure_config
from babyllm.errors import BabyError


def child_main(spec_json: str) -> int:
    """Entry point of a measuring child: one JSON line on stdout."""
    try:
        result = measure_config(json.loads(spec_json))
    except BabyError as e:
        print(json.dumps({"error": str(e)}))
        return 0
    print(json.dumps(result))
    return 0


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    code = "import sys; from babyllm.commands.bench.child import child_main; sys.exit(child_main(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise BabyError(f"bench of config '{spec['config']}' failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise BabyError(result["error"])
    return result
