"""Where the project's shipped folders live, so commands work from any directory."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
CORPORA = ROOT / "corpora"
