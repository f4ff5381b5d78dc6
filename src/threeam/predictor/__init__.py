"""threeam.predictor: video sessions, prompts, propagation (SAM 2 and 3AM).

Build predictors with `threeam.predictor.build.build_predictor` (also ``threeam.build_predictor``).
"""


def build_3am_predictor(ctx):
    """The evaluation runner's 3AM factory (``build_eval_predictor(ctx, "3am")``)."""
    from threeam.predictor.build import build_eval_predictor

    return build_eval_predictor(ctx, "3am")
