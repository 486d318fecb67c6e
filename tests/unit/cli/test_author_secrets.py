"""The author CLI's ``--secret NAME=VALUE`` options."""

from __future__ import annotations

import pytest

from plughost.cli.author.errors import CliError
from plughost.cli.author.resolve import parse_secrets


def test_pairs_become_a_dict_and_a_value_may_hold_equals_signs() -> None:
    assert parse_secrets(["a=1", "b=x=y", "a=2", "c="]) == {"a": "2", "b": "x=y", "c": ""}
    assert parse_secrets(None) == {}


@pytest.mark.parametrize("pair", ["no-equals-sign-secretvalue", "=secretvalue", " =secretvalue"])
def test_a_malformed_pair_is_named_without_its_value(pair: str) -> None:
    with pytest.raises(CliError) as caught:
        parse_secrets(["ok=1", pair])
    assert "--secret number 2" in caught.value.message
    assert "secretvalue" not in caught.value.message
