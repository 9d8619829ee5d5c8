"""Checking models: cross-validation over runs and comparison of models."""
