"""threeam.data."""
