"""The command line explains itself: a real description, help on every option, every engine named."""
from __future__ import annotations

import argparse

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
