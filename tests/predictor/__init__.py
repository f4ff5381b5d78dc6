"""Tests of threeam.predictor (a package so that module names cannot clash with other test folders)."""
