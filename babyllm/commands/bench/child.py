"""Each config is measured in a fresh child process: its memory peak is its own, and no allocator state carries over."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import deque
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
    """Measure one config in a child; its progress lines pass through to stderr as they come."""
    code = "import sys; from babyllm.commands.bench.child import child_main; sys.exit(child_main(sys.argv[1]))"
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    kept: deque[str] = deque(maxlen=8)  # the tail of anything else it said, for a failure's message
    assert proc.stderr is not None and proc.stdout is not None
    out: list[str] = []
    stdout_pipe = proc.stdout
    reader = threading.Thread(target=lambda: out.append(stdout_pipe.read()), daemon=True)  # (a full pipe never
    reader.start()  # blocks the child while stderr is read here)
    for line in proc.stderr:
        if line.startswith("bench: "):
            sys.stderr.write(line)
            sys.stderr.flush()
        else:
            kept.append(line.rstrip("\n"))
    proc.wait()
    reader.join()
    stdout = "".join(out)
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(kept)
        raise BabyError(f"bench of config '{spec['config']}' failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise BabyError(result["error"])
    return result
