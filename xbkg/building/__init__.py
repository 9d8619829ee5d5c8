"""Building models: histograms, exposure, grouping, thresholds, the dask reduction, make/update."""
