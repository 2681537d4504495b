"""The command line explains itself: a real description, help on every option, every engine named."""
from __future__ import annotations

import argparse
import subprocess
import sys

from rlcsp.calculators import available_calculators
from rlcsp.cli import build_parser


def options(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_of_every_command_has_help():
    missing = [(" ".join(path), action.option_strings or action.dest) for path, action in options(build_parser())
               if not action.help]
    assert not missing, missing


def test_the_description_says_what_rlcsp_does_and_run_names_every_engine():
    parser = build_parser()
    assert "crystal structure searches" in parser.description
    calculator = next(a for path, a in options(parser) if path == ("run",) and "--calculator" in a.option_strings)
    assert all(name in calculator.help for name in available_calculators())


def test_the_parser_needs_none_of_the_design_stack():
    """Every command builds the whole parser, so `rlcsp copy` on a machine with rlcsp's core alone (the device's
    campaign site) must not import gymnasium, SMACT, pandas or torch_geometric to parse its arguments."""
    code = ("import sys; from rlcsp.cli import build_parser; build_parser(); "
            "print(' '.join(m for m in ('gymnasium', 'smact', 'pandas', 'torch_geometric') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_fill_eval_offers_every_agent_of_the_table():
    from rlcsp.design.fill_eval import AGENTS
    from rlcsp.design.fill_eval_cli import AGENT_NAMES

    assert AGENT_NAMES == tuple(AGENTS)
