"""Validated configuration: recipes (what to compress), targets (where it runs), devices (which board)."""
