"""The built-in dataset loaders; importing this package registers them all.

One module per dataset family; each module's docstring gives its file layout and how its records
become Problem rows. :func:`load_file` reads a user's own jsonl / json / csv / parquet file.
"""

from distill.data.loaders import (  # noqa: F401  (importing registers the loaders)
    ai2_arith,
    asdiv,
    gsm8k,
    math23k,
    math500,
    mawps,
    svamp,
    weak12k,
)
from distill.data.loaders.generic import MissingColumnError, load_file

__all__ = ["MissingColumnError", "load_file"]
