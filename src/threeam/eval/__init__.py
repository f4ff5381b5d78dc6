"""threeam.eval."""
