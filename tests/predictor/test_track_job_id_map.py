"""`threeam.predictor.track_job.id_map_from_logits`: the id-map rule shared by `threeam track` and the web app."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from threeam.errors import InputError
from threeam.predictor.track_job import id_map_from_logits


def test_highest_positive_logit_wins_and_background_is_zero():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]],
                           [[1.0, 4.0], [0.7, -0.1]]])  # (N=2, H=2, W=2)
    ids = id_map_from_logits([3, 7], logits)
    assert ids.dtype == np.uint8
    assert ids.tolist() == [[3, 7], [7, 0]]
    # the (N, 1, H, W) layout of the predictors gives the same map
    assert np.array_equal(id_map_from_logits([3, 7], logits[:, None]), ids)


def test_no_objects_and_bad_ids():
    assert id_map_from_logits([], torch.zeros(0, 1, 3, 4)).tolist() == [[0] * 4] * 3
    with pytest.raises(InputError):
        id_map_from_logits([0], torch.ones(1, 2, 2))
