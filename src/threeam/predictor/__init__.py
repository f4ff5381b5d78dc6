"""threeam.predictor."""
