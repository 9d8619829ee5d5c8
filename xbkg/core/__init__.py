"""The bottom layer: bin edges, the model schema, groups and defaults (numpy and xarray only)."""
