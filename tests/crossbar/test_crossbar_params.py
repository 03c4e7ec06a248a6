"""Parameters: dotted overrides, files, presets and their error messages."""

from __future__ import annotations

import json

import pytest

from ephw.crossbar import PRESETS, CrossbarParams, get_preset, load_params
from ephw.errors import ConfigError


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_defaults_are_ideal() -> None:
    p = CrossbarParams()
    assert p.describe() == "ideal"
    assert (p.conductance.g_min, p.conductance.g_max) == (0.0, 25.0)
    assert (p.chip_seed, p.read_seed) == (0, 1)
    assert get_preset("ideal") == p
    # gaussian with rel = abs = 0 is off; setting rel alone switches it on, kind=none off again
    assert p.replace(**{"programming_noise.rel": 0.05}).describe() == "gaussian programming noise"
    assert get_preset("rram").replace(**{"programming_noise.kind": "none"}).programming_noise.enabled is False


def test_dotted_overrides_parse_strings() -> None:
    p = CrossbarParams().replace(
        **{
            "read_noise.proportional": "0.02",
            "conductance.levels_bits": "4",
            "drift.enabled": "true",
            "mapping.scale": "column",
            "dac_forward.bound": "none",
            "dac_forward.bits": 8,
            "chip_seed": "7",
        }
    )
    assert p.read_noise.proportional == 0.02
    assert p.conductance.levels_bits == 4
    assert p.drift.enabled is True
    assert p.mapping.scale == "column"
    assert p.dac_forward.bits == 8 and p.dac_forward.bound is None
    assert p.chip_seed == 7
    assert p.replace(**{"conductance.levels_bits": "none"}).conductance.levels_bits is None
    # a group as a dict merges into the current group
    q = p.replace(read_noise={"additive_uS": 0.1})
    assert q.read_noise.additive_uS == 0.1 and q.read_noise.proportional == 0.02


@pytest.mark.parametrize(
    "key,value,names",
    [
        ("read_noise.foo", 1, ["read_noise.additive_uS", "read_noise.proportional"]),
        ("readnoise.proportional", 1, ["read_noise.proportional", "chip_seed"]),
        ("chip_seed.x", 1, ["chip_seed"]),
        ("read_noise", 0.02, ["read_noise.additive_uS", "read_noise.pcm_1f"]),
        ("mapping.scale", "row", ["tile", "column"]),
        ("programming_noise.kind", "lognormal", ["none", "gaussian", "pcm"]),
    ],
)
def test_unknown_fields_and_choices_name_the_valid_ones(key: str, value: object, names: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        CrossbarParams().replace(**{key: value})
    message = _one_line(exc)
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    "key,value",
    [
        ("read_noise.proportional", "abc"),
        ("read_noise.proportional", -0.1),
        ("conductance.g_max", 0),
        ("conductance.levels_bits", "4.5"),
        ("stuck_faults.p_gmin", 1.5),
        ("drift.enabled", "maybe"),
        ("mapping.tile_rows", 0),
        ("chip_seed", -1),
    ],
)
def test_bad_values_raise_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        CrossbarParams().replace(**{key: value})
    _one_line(exc)


def test_converter_errors_name_the_converter() -> None:
    with pytest.raises(ConfigError, match=r"^adc_transposed"):
        CrossbarParams().replace(**{"adc_transposed.bits": 1})


@pytest.mark.parametrize("name", list(PRESETS))
def test_dict_round_trip(name: str) -> None:
    p = get_preset(name)
    d = json.loads(json.dumps(p.to_dict()))
    assert CrossbarParams.from_dict(d) == p


def test_presets_hold_the_documented_numbers() -> None:
    pcm = get_preset("pcm")
    assert pcm.conductance.g_max == 25.0 and pcm.programming_noise.kind == "pcm"
    assert pcm.drift.enabled and pcm.drift.t0_seconds == 20.0 and pcm.read_noise.pcm_1f
    assert pcm.read_noise.t_read_s == 250e-9
    rram = get_preset("rram")
    assert rram.programming_noise.kind == "gaussian" and 4 <= rram.conductance.levels_bits <= 6
    assert rram.dac_forward.bits == 8 and rram.adc_forward.bits == 8
    assert 0 < rram.stuck_faults.p_gmin < 0.01


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError) as exc:
        load_params("memristor")
    assert "ideal, rram-illustrative, pcm, rram-wan2022 (deprecated: rram)" in _one_line(exc)


def test_toml_file_then_overrides(tmp_path) -> None:
    f = tmp_path / "chip.toml"
    f.write_text(
        "chip_seed = 5\n[read_noise]\nproportional = 0.03\nadditive_uS = 0.1\n"
        "[conductance]\nlevels_bits = 6\n[dac_forward]\nbits = 6\n"
    )
    p = load_params("rram", file=f, overrides=["read_noise.proportional=0.04", "mapping.tile_rows=128"])
    assert p.chip_seed == 5
    assert p.read_noise.proportional == 0.04  # the override wins over the file
    assert p.read_noise.additive_uS == 0.1
    assert p.conductance.levels_bits == 6 and p.conductance.g_min == 50.0  # the preset stays underneath
    assert p.dac_forward.bits == 6 and p.dac_forward.bound is None
    assert p.mapping.tile_rows == 128


def test_json_file(tmp_path) -> None:
    f = tmp_path / "chip.json"
    f.write_text(json.dumps({"drift": {"enabled": True, "t_seconds": 86400}, "dac_forward": {"bound": None}}))
    p = load_params("ideal", file=f)
    assert p.drift.enabled and p.drift.t_seconds == 86400.0


def test_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_params(file=tmp_path / "missing.toml")
    _one_line(exc)
    bad = tmp_path / "bad.toml"
    bad.write_text("[read_noise\n")
    with pytest.raises(ConfigError) as exc:
        load_params(file=bad)
    _one_line(exc)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"read_noise": {"sigma": 1}}')
    with pytest.raises(ConfigError, match="read_noise.proportional"):
        load_params(file=unknown)


def test_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_params(overrides=["read_noise.proportional"])
    with pytest.raises(ConfigError, match="read_noise.additive_uS"):
        load_params(overrides=["read_noise=0.02"])
