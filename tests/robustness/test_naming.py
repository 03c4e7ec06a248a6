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
