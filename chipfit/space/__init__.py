"""Search spaces, architecture families, DSP front-ends, named reference architectures."""

from chipfit.runtime.frontend import MfccFrontEnd
from chipfit.space.config import ArchConfig
from chipfit.space.spaces import (
    Candidate,
    SearchSpace,
    create_space,
    reference_config,
    reference_modality,
    reference_names,
)

__all__ = ["ArchConfig", "Candidate", "MfccFrontEnd", "SearchSpace", "create_space", "reference_config",
           "reference_modality", "reference_names"]
