"""Grid keys onto settings, checked by the config loader's own rules."""

from __future__ import annotations

import pytest

from callsbot.config import Settings, Tier, with_overrides
from callsbot.errors import ConfigError
from callsbot.replay.grid import apply, configurations, parse_grid, targets


def test_short_names_section_keys_and_scoring_keys_map_onto_settings() -> None:
    assert targets("window") == ("store.window_seconds",)
    assert targets("alert_threshold") == ("scoring.alert_threshold",)
    assert targets("half_life") == ("consensus.half_life_seconds",)
    assert targets("market.min_liquidity_usd") == ("market.min_liquidity_usd",)
    assert targets("trade_usd_large") == ("scoring.trade_usd_large",)
    with pytest.raises(ConfigError, match="unknown grid key"):
        targets("colour")


def test_values_are_read_and_checked_as_config_toml_would() -> None:
    s = apply(
        Settings(),
        [
            ("window", "1800"),
            ("threshold", "8.5"),
            ("cooldown", "600"),
            ("tiers", "4:3/2:1/0:-2"),
            ("market.min_liquidity_usd", "25000"),
        ],
    )
    assert s.store.window_seconds == 1800
    assert s.scoring.alert_threshold == 8.5
    assert s.scoring.cooldown_seconds == 600
    assert s.consensus.tiers == (Tier(4, 3), Tier(2, 1), Tier(0, -2))
    assert s.market.min_liquidity_usd == 25_000.0
    assert s.telegram == Settings().telegram  # nothing else moved


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("window", "soon", "store.window_seconds: expected an integer"),
        ("window", "0", "store.window_seconds: must be > 0"),
        ("cooldown", "-5", "scoring.cooldown_seconds: must be > 0"),
        ("tiers", "3:2/2:1", "tier with min_groups = 0"),
        ("tiers", "3-2", "expected groups:points"),
        ("scoring.nope", "1", "scoring.nope: unknown key"),
        ("mode", "median", "consensus.mode: must be one of count, weighted"),
        ("thresholds", "2", "expected θ2:θ3"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(key: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        apply(Settings(), [(key, value)])


def test_secrets_cannot_be_overridden() -> None:
    with pytest.raises(ConfigError, match="secret"):
        with_overrides(Settings(), {"cielo.api_key": "x"})


def test_a_section_s_cross_key_rules_are_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """A section with ``problems()`` (weighted consensus has one) is checked as a whole."""
    from callsbot.config import ScoringSettings

    def problems(self: ScoringSettings) -> list[tuple[str, str]]:
        if self.trade_usd_large < self.trade_usd_medium:
            return [("trade_usd_large", "must be >= trade_usd_medium")]
        return []

    monkeypatch.setattr(ScoringSettings, "problems", problems, raising=False)
    assert apply(Settings(), [("trade_usd_large", "2000")]).scoring.trade_usd_large == 2000
    with pytest.raises(ConfigError, match=r"scoring\.trade_usd_large: must be >= trade_usd_medium"):
        apply(Settings(), [("trade_usd_large", "500")])


def test_the_deployed_configuration_comes_first_and_is_not_repeated() -> None:
    configs = configurations(Settings(), ["threshold=6,7", "window=3600,1800"])
    assert [c.label for c in configs] == [
        "deployed",
        "threshold=6 window=3600",
        "threshold=6 window=1800",
        "threshold=7 window=1800",
    ]
    assert configs[0].deployed
    assert configs[0].settings == Settings()
    assert configs[3].settings.store.window_seconds == 1800


def test_grid_items_need_a_key_and_values() -> None:
    assert parse_grid(["window=1,2"]) == [("window", ["1", "2"])]
    for bad in (["window"], ["=1"], ["window="]):
        with pytest.raises(ConfigError):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["window=1", "window=2"])
