"""threeam.train."""
