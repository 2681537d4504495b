"""Fillings one move away from the labelled ones closest to the target: where the hybrid loop may look next.

Of 197 DFT-labelled elpasolite fillings (session 30's runs at 1.12 and 3.0 eV), two whose formulas differ by one
substitution have gaps within 0.25 eV of each other 28 % of the time and two of one formula (other arrangements)
47 %, against 10 % for any two. So a filling next to one that DFT put on target is the likeliest to be on target
too, and the gap model, whose labels are nearby, is surest there. The agent's own fillings mostly repeat what DFT
has answered (one call per 50-90 episodes in session 30), so at a call the hybrid loop also weighs these
neighbours (:class:`rlcsp.design.rewards.HybridEvaluator`, ``neighbourhood``).

A move is a swap of two sites of one role holding different elements (another arrangement of the formula) or a
substitution on one site by another element of the site's role. Every neighbour must pass the env's own chemistry
(``valid``: vocabulary, site roles, element limit, charge neutrality under common states, SMACT), so the loop
never sends DFT a filling the agent could not have made.
"""
from __future__ import annotations

from typing import Callable, Sequence

from rlcsp.design.skeleton import Skeleton

Species = tuple[str, ...]


def moves(species: Sequence[str], roles: Sequence[int], elements: dict[int, Sequence[str]]) -> list[Species]:
    """Every swap of two same-role sites with different elements and every same-role substitution, in a fixed
    order (site by site, then element by element, as ``elements`` lists them)."""
    species, out = tuple(species), []
    for i in range(len(species)):
        for j in range(i + 1, len(species)):
            if roles[i] == roles[j] and species[i] != species[j]:
                swapped = list(species)
                swapped[i], swapped[j] = species[j], species[i]
                out.append(tuple(swapped))
        for element in elements[roles[i]]:
            if element != species[i]:
                out.append(species[:i] + (element,) + species[i + 1:])
    return out


class Neighbourhood:
    """The unlabelled fillings one move from the ``seeds`` labelled fillings whose DFT gaps lie closest to the
    target, each once up to the skeleton's symmetry (``Skeleton.canonical``), in a fixed order: the same labels give the
    same pool, so a resumed run makes the same calls. ``limit`` bounds the pool (the gap model scores every
    member at each call: CHGNet features for each)."""

    def __init__(self, skeleton: Skeleton, roles: Sequence[int], elements: dict[int, Sequence[str]],
                 valid: Callable[[Species], bool], seeds: int = 3, limit: int = 400):
        self.skeleton, self.roles, self.elements, self.valid = skeleton, list(roles), elements, valid
        self.seeds, self.limit = seeds, limit

    def pool(self, labels: dict[Species, float | None], target: float) -> list[Species]:
        answered = sorted((abs(gap - target), species) for species, gap in labels.items() if gap is not None)
        out: dict[Species, None] = {}
        for _, seed in answered[:self.seeds]:
            for move in moves(seed, self.roles, self.elements):
                key = self.skeleton.canonical(move)
                if key not in labels and key not in out and self.valid(move):
                    out[key] = None
                    if len(out) >= self.limit:
                        return list(out)
        return list(out)
