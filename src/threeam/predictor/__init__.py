"""threeam.predictor: video sessions, prompts, propagation (SAM 2 and 3AM)."""


def build_3am_predictor(ctx):
    """The evaluation runner's 3AM factory; see `threeam.predictor.three_am_predictor.build_3am_predictor`."""
    from threeam.predictor.three_am_predictor import build_3am_predictor as build

    return build(ctx)
