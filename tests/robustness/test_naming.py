"""Seeded model names: ``"<family> [s<seed>]"`` round-trips, other names are their own family."""

from __future__ import annotations

from ephw.robustness.naming import families, family, seed_name, seeded


def test_a_seeded_name_round_trips():
    name = seed_name("Distilled BP-CNN (ll)", 2)
    assert name == "Distilled BP-CNN (ll) [s2]"
    assert seeded(name) == ("Distilled BP-CNN (ll)", 2)
    assert family(name) == "Distilled BP-CNN (ll)"


def test_names_without_a_seed_suffix_are_their_own_family():
    assert seeded("ff") is None and family("ff") == "ff"
    assert seeded("BP-CNN [s]") is None and seeded("BP-CNN[s0]") is None


def test_families_keep_first_seen_order():
    names = ["EP-CNN [s0]", "BP-CNN [s0]", "BP-CNN [s1]", "ff", "EP-CNN [s1]"]
    assert families(names) == {
        "EP-CNN": ["EP-CNN [s0]", "EP-CNN [s1]"],
        "BP-CNN": ["BP-CNN [s0]", "BP-CNN [s1]"],
        "ff": ["ff"],
    }


def test_a_legend_counts_only_the_seeds_with_a_plotted_point() -> None:
    """Seed 1 has only its clean row (ε 0) so far: the family's line is one seed's, not two."""
    from ephw.robustness.report import plotted_members

    groups = families(["ResNet [s0]", "ResNet [s1]", "BP [s0]"])
    curves = {"PGD": {"ResNet [s0]": {0.0: [1.0], 0.5: [0.2]}, "ResNet [s1]": {0.0: [1.0]}, "BP [s0]": {0.5: [0.1]}}}
    assert plotted_members(groups, curves, ["PGD"]) == {"ResNet": ["ResNet [s0]"], "BP": ["BP [s0]"]}
