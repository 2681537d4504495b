from __future__ import annotations

import subprocess

from .conftest import ROOT


def readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    bash .ci/setup")]


def test_readme_opens_with_the_demo_and_test_commands():
    demo, test = readme_commands()[:2]
    assert demo.endswith("rlcsp demo")
    assert test.endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    out = subprocess.run(["sed", "-n", r"s/^    \(bash \.ci\/setup && .*pytest.*\)$/\1/p", "README.md"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == readme_commands()[1]
    assert "README.md" in (ROOT / ".ci" / "run").read_text()
