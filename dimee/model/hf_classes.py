"""What dimee takes from transformers' model side (the Auto classes, `no_init_weights`), imported lazily and
without scikit-learn: transformers' model classes import its generation utilities, which load sklearn (and
scipy.stats) for assisted decoding wherever it is installed, ~0.5 s of a worker's start for code an encoder
never runs. transformers is told sklearn is absent before the first such import; calibration imports sklearn
itself and keeps it. Import transformers' model modules through here, never at a module's top."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal


def _without_sklearn() -> None:
    from transformers.utils import import_utils

    import_utils._sklearn_available = False


def auto_class(name: Literal["AutoModel", "AutoTokenizer"]) -> type:
    _without_sklearn()
    import transformers

    return getattr(transformers, name)


def no_init_weights() -> AbstractContextManager[None]:
    """Build a model without initialising its weights: for a model whose every weight is then loaded."""
    _without_sklearn()
    from transformers.modeling_utils import no_init_weights as skip

    return skip()
