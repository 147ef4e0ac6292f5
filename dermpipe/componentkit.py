"""What every stage shares: the decorator that makes it a KFP lightweight component on dermpipe's own image, and
`param`, the field of a stage's parameter dataclass (default + help)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import field
from typing import Any

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


def param(default: Any, help: str) -> Any:
    """A stage parameter's default and help in one place: the dataclass field that `dermpipe run`'s options are
    derived from and that the component and pipeline signatures are checked against (the parameter agreement test)."""
    return field(default=default, metadata={"help": help})
