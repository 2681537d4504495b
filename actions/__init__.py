"""FUSE's moves and their registry: built-ins by FUSE number, plus plugins from the ``rlcsp.actions`` entry points."""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from rlcsp.actions.base import Move, MoveContext
from rlcsp.actions.blocks import SwapModules, SwapSubmodules
from rlcsp.actions.double import Double
from rlcsp.actions.exchange import Shuffle, SwapSeveral, SwapTwo
from rlcsp.actions.instructions import NewInstructions
from rlcsp.actions.new_structure import NewAnySize, NewSameOrSmaller
from rlcsp.exceptions import ConfigError, UnknownName

__all__ = ["MOVES", "Move", "MoveContext", "available_moves", "get_move"]

MOVES: dict[int, Move] = {
    move.number: move
    for move in (SwapTwo(), SwapSubmodules(), NewInstructions(), SwapModules(), Double(), NewSameOrSmaller(),
                 NewAnySize(), SwapSeveral(), Shuffle())
}


@lru_cache(maxsize=1)
def _registered() -> tuple[Move, ...]:
    """Built-ins plus every installed ``rlcsp.actions`` entry point (built-ins are registered there too)."""
    moves = dict(MOVES)
    for ep in entry_points(group="rlcsp.actions"):
        try:
            move = ep.load()()
        except Exception as exc:  # a broken plugin must name itself, not surface as an obscure import error
            raise ConfigError(f"move plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(move, Move):
            raise ConfigError(f"move plugin {ep.name!r} ({ep.value}) is not an actions.base.Move")
        known = moves.setdefault(move.number, move)
        if type(known) is not type(move):
            raise ConfigError(f"move plugin {ep.name!r} reuses number {move.number} of {known.name!r}")
    return tuple(moves[n] for n in sorted(moves))


def available_moves() -> dict[int, Move]:
    """Every known move by number."""
    return {move.number: move for move in _registered()}


def get_move(key: int | str) -> Move:
    """A move by FUSE number (5 or '5') or by name ('double'); UnknownName otherwise."""
    moves = available_moves()
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, int) and key in moves:
        return moves[key]
    for move in moves.values():
        if move.name == key:
            return move
    raise UnknownName("move", str(key), [m.name for m in moves.values()] + [str(n) for n in moves])
