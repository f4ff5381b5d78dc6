"""threeam.models.must3r."""
