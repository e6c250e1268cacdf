"""The documentation: the site builds with --strict (a broken link, a missing page or
snippet fails), the command reference is generated from the parsers and holds every
option, DESIGN.md's layout names every package, and the README stays a front door."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

from sonic_bench.cli.reference import command_reference, every_flag

MKDOCS = Path(sys.executable).parent / "mkdocs"


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    reference = (site / "reference" / "index.html").read_text()
    assert "sonic-bench sweep" in reference and "--latency-budget" in reference
    pages = list(site.glob("**/index.html"))
    assert len(pages) >= 15


def test_every_option_of_every_command_is_in_the_reference():
    text = command_reference()
    flags = every_flag()
    missing = sorted(f for f in flags if f"`{f} " not in text and f"`{f}`" not in text)
    assert not missing and len(flags) > 100, missing


def test_the_layout_names_every_package():
    design = (ROOT / "DESIGN.md").read_text()
    packages = [p.parent.name for p in (ROOT / "src" / "sonic_bench").glob("*/__init__.py")]
    modules = [p.name for p in (ROOT / "src" / "sonic_bench").glob("*.py") if p.stem != "__init__"]
    assert not [p for p in packages if f"`{p}/`" not in design]
    assert not [m for m in modules if f"`{m}`" not in design]


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    assert "../shared" not in readme and "arXiv:2009.04509" in readme
