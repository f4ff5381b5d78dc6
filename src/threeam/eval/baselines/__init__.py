"""Training-free tracking baselines as memory policies on the SAM 2 tracking step (SAM2Long, DAM4SAM)."""
from threeam.eval.baselines.dam4sam import (DAM4SAM_PRESETS, DAM4SAMConfig, DAM4SAMPolicy, dam4sam_presets,
                                            get_dam4sam_config)
from threeam.eval.baselines.policy import MemoryPolicy, attach_policy, candidate_output, candidate_step
from threeam.eval.baselines.sam2long import (SAM2LONG_PRESETS, SAM2LongConfig, SAM2LongPolicy, get_sam2long_config,
                                             sam2long_presets)

__all__ = ["MemoryPolicy", "attach_policy", "candidate_step", "candidate_output", "SAM2LongConfig",
           "SAM2LongPolicy", "SAM2LONG_PRESETS", "get_sam2long_config", "sam2long_presets", "DAM4SAMConfig",
           "DAM4SAMPolicy", "DAM4SAM_PRESETS", "get_dam4sam_config", "dam4sam_presets"]
