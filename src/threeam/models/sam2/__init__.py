"""threeam.models.sam2."""
