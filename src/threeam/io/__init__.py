"""threeam.io."""
