"""FUSE's behaviours that rlcsp's default mode does differently (fuse.md §2-§4, §7), each reproducible on its own.

A quirk is named where it acts, so an ablation switches exactly one code path. The version profiles bundle
the quirks of one FUSE release: ``fuse="1.04"`` is the loop behind the paper's Original policy, ``fuse="1.06"``
the one behind Uniform (read from FUSE-stable's ``run_fuse``, ``make_basin_move`` and
``generate_random_structure``), ``fuse="rl"`` FUSE_RL's, behind the paper's RLCSP rows: 1.04's generator,
assembly, checks and moves with moves 9 and 10 of their own, driven by FUSE_RL's retry rule (fuse.md §4.5, which is
rlcsp's own: a move is kept for 500 failed builds, then excluded), read from FUSE_RL 98bc753. ``resolve`` turns
a profile, extra quirks and removed ones into the set the search uses; ``Search.effective_settings`` reports it,
with how often each loop quirk acted, in summary.json.
"""
from __future__ import annotations

from collections.abc import Iterable

from rlcsp.exceptions import ConfigError, UnknownName

QUIRKS: dict[str, str] = {
    "lattice_redraw": "random instructions re-draw the lattice type among all types possible for the size (§1.3)",
    "uncapped_fus": "random strings draw the formula-unit count from 1..4N/apf, without the max_fus cap; with a "
                    "formula-unit target this weights the cell sizes differently (§1.6)",
    "sub_capped_moves": "moves 6 and 7 build a random string under a sub-module cap and no formula-unit target, so "
                        "move 6 can exceed the current size (FUSE 1.04 and FUSE_RL, §2.3)",
    "cartesian_offsets": "every gamma = 120 genome takes its layer offsets as Cartesian multiples of ap, also one "
                         "whose offset gene says lattice fractions (§1.4)",
    "plain_checks": "distances on a plain 2x2x2 supercell, coordination by minimum image within it (§1.7)",
    "block_reversal": "moves 2 and 4 rebuild the blocks in reverse order, a point reflection (§2.2)",
    "string_double": "move 5 along a or b repeats groups of the reversed block list and keeps that order (FUSE 1.04, "
                     "§2.2): not a supercell, the layers reversed",
    "string_double_106": "move 5 along a or b repeats runs of nb blocks or single blocks in string order (FUSE "
                         "1.06): rows in place, AABB rather than ABAB",
    "noop_moves": "exchange moves may return the genome unchanged, with FUSE's ranges for k (§2.1)",
    "metropolis_global": "the Metropolis test compares the new energy with the global minimum, not the current "
                         "energy (§3.2)",
    "redraw_each_attempt": "every failed build or check draws a new move type: FUSE 1.04 checks outside the move, "
                           "so moves are relaxed in proportion to weight x pass rate (§2.4)",
    "redraw_after_100": "a move type is kept for 100 failed builds, then a new one is drawn (FUSE 1.06, §2.4); "
                        "the default keeps it for max_failed_attempts (500, FUSE_RL) and then excludes it",
    "string_sizes": "initial structures take create_random_string's sizes (for Y2Ti2O7 about half are one "
                    "formula unit) instead of a formula-unit count drawn uniformly from 1..imax_fus (FUSE 1.04)",
    "string_overflow_redraw": "moves 6 and 7 fail on a string with more cations than sub-modules (about half of the "
                              "draws; FUSE 1.04's and FUSE_RL's create_random_string raises there); what is built "
                              "next is the profile's redraw rule",
    "swap_first_uniform": "move 1 over any positions draws the first position uniformly and the second among those "
                          "holding another value, rather than a uniform pair of different values",
    "move6_global_cells": "move 6 draws its cell from the global sub-module limit; only its formula-unit count "
                          "comes from the current structure (FUSE 1.06's generate_random_structure call)",
    "rattle_seed_42": "every rattle is ASE's atoms.rattle with its fixed seed 42, so a genome always starts its "
                      "relaxation from the same displacements (§1.8)",
    "melt_bookkeeping": "energies compared rounded to 1e-6; a downhill step that is not a new global minimum "
                        "leaves ca at 1, one equal to the global minimum resets neither ca nor the melt weights "
                        "(§3.2)",
    "energy_uniqueness": "a relaxed structure is new when its energy rounded to 1e-6 eV/atom has not been seen since "
                         "the best initial structure, not when no structure in the energy window matches it; "
                         "the non-unique penalty of FUSE_RL's rewards follows this rule (§3.2, §3.3)",
    "gulp_inner_cut": "a relaxation fails as a collapse when its rattled start has a cation-anion pair inside "
                      "the exponential's inner cutoff (1.2 A in lib2): GULP drops A exp(-r/rho) there, so the "
                      "Coulomb attraction pulls the pair together (fuse.md §6.2)",
}

# What each FUSE release does; everything else is rlcsp's default.
PROFILES: dict[str, frozenset[str]] = {
    "1.04": frozenset({"lattice_redraw", "uncapped_fus", "sub_capped_moves", "cartesian_offsets", "plain_checks",
                       "block_reversal", "string_double", "noop_moves", "metropolis_global", "redraw_each_attempt",
                       "string_sizes", "string_overflow_redraw", "swap_first_uniform", "rattle_seed_42",
                       "melt_bookkeeping", "energy_uniqueness", "gulp_inner_cut"}),
    "1.06": frozenset({"lattice_redraw", "uncapped_fus", "cartesian_offsets", "plain_checks", "block_reversal",
                       "string_double_106", "noop_moves", "metropolis_global", "redraw_after_100",
                       "move6_global_cells", "swap_first_uniform", "rattle_seed_42", "melt_bookkeeping",
                       "energy_uniqueness", "gulp_inner_cut"}),
}
# FUSE_RL (the paper's RLCSP rows) is 1.04 but for the redraw rule, which is rlcsp's own (fuse.md §4.5).
PROFILES["rl"] = PROFILES["1.04"] - {"redraw_each_attempt"}
EXCLUSIVE = (frozenset({"redraw_each_attempt", "redraw_after_100"}), frozenset({"string_double", "string_double_106"}))


def quirk_set(value: bool | str | Iterable[str] | None) -> frozenset[str]:
    """Quirk names as a set: None/False for none, True or "all" for every one, names (list or "a,b")."""
    if value is None or value is False:
        return frozenset()
    if value is True:
        return frozenset(QUIRKS)
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if "all" in names:
        return frozenset(QUIRKS)
    for name in names:
        if name not in QUIRKS:
            raise UnknownName("FUSE quirk", name, list(QUIRKS))
    return frozenset(names)


def resolve(fuse: str | None = None, quirks: str | Iterable[str] | None = None,
            without: str | Iterable[str] | None = None) -> frozenset[str]:
    """The quirks a search runs with: the profile's, plus ``quirks``, minus ``without``."""
    if fuse is not None and fuse not in PROFILES:
        raise UnknownName("FUSE version profile", str(fuse), list(PROFILES))
    removed = quirk_set(without)
    chosen = (PROFILES.get(fuse, frozenset()) | quirk_set(quirks)) - removed
    for pair in EXCLUSIVE:
        if pair <= chosen:
            raise ConfigError(f"quirks {' and '.join(sorted(pair))} exclude each other")
    return chosen
