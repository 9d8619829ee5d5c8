"""Sky geometry: FoV coordinates, solid angles, exclusion circles, Earth orientation."""
