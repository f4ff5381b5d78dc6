"""threeam: geometry-consistent video object segmentation (the 3AM method).

SAM 2.1 and MUSt3R are reimplemented in plain PyTorch with the official state-dict key names;
a Feature Merger fuses MUSt3R's multi-level features into SAM 2's stride-16 image features.
"""
__version__ = "0.1.0"
