"""The decorator every stage uses to become a KFP lightweight component running on dermpipe's own image."""

from __future__ import annotations

import os
from collections.abc import Callable

from dermpipe import config


def stage_component(*, base_image: str = config.BASE_IMAGE) -> Callable:
    """dsl.component with dermpipe's image and no runtime `pip install kfp` (the image has it).

    Inside a running task (_KFP_RUNTIME=true) kfp.dsl has no `component`; the stage module is then imported only for
    its logic, so the decorator leaves the function as it is.
    """
    if os.environ.get("_KFP_RUNTIME", "false") == "true":
        return lambda func: func
    from kfp import dsl

    return dsl.component(base_image=base_image, install_kfp_package=False)
