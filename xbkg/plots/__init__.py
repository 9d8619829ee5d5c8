"""Figures (matplotlib, imported lazily)."""
