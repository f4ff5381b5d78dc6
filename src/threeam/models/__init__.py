"""threeam.models."""
