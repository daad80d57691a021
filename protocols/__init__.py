"""Declarative benchmark definitions (TOML), shipped with lrbench."""
