"""Shared fixtures: an isolated settings/data dir per test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every test gets its own data dir and no user config file."""
    from sc_inverse.settings import get_settings

    monkeypatch.setenv("SC_INVERSE_DATA_DIR", str(tmp_path / "sc_inverse_data"))
    monkeypatch.setenv("SC_INVERSE_CONFIG", "")
    monkeypatch.delenv("SC_INVERSE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
