"""Where the shipped configs and corpus live: in the package, so a checkout and an installed wheel find them alike."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIGS = PACKAGE / "configs"  # package data (pyproject.toml's [tool.setuptools.package-data])
CORPORA = PACKAGE / "corpora"
