"""The homelab stack's config, validated, with a change applied: for generator tests."""

from __future__ import annotations

import copy

import pytest

from model.config import ConfigError, StackConfig, load_stack_config
from tests.stacks import homelab_sections


def homelab_config(change=None) -> StackConfig:
    sections = copy.deepcopy(homelab_sections())
    if change:
        change(sections)
    return load_stack_config(sections)


def problems_of(change) -> dict[str, str]:
    """key path -> message of every problem the changed config has (it must have some)."""
    with pytest.raises(ConfigError) as caught:
        homelab_config(change)
    return {p.path: p.message for p in caught.value.problems}
