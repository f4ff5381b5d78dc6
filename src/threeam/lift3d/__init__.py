"""threeam.lift3d."""
