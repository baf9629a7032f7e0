"""MAWPS as MWPToolkit publishes it: JSON arrays of ``{id, original_text, segmented_text,
equation, ans}``.

Splits: ``all`` = ``mawps/MAWPS.json`` (2373); ``train`` / ``valid`` / ``test`` =
``mawps/mwptoolkit_split/{train,valid,test}set.json`` (1898 / 237 / 238), a partition of the
same records under the same ids, so a problem's id (``mawps/<id>``) is the same whichever file it
was loaded from. ``ans`` is a float or a numeric string; ``equation`` (``x=56*9``, sometimes
implicit) is the gold equation; ``segmented_text`` goes to meta.
"""

from __future__ import annotations

from pathlib import Path

from distill.data.base import LoadResult, register_dataset
from distill.data.loaders._common import (
    SplitFilesLoader,
    mwp_fields,
    read_id,
    read_json_array,
)


@register_dataset("mawps")
class MAWPS(SplitFilesLoader):
    description = "MAWPS (en), MWPToolkit release: equations + float answers"
    layout = "mawps/MAWPS.json (all); mawps/mwptoolkit_split/{train,valid,test}set.json"
    lang = "en"
    source_fields = {"question": "original_text", "answer": "ans"}
    split_files = {
        "all": ("mawps/MAWPS.json",),
        "train": ("mawps/mwptoolkit_split/trainset.json",),
        "valid": ("mawps/mwptoolkit_split/validset.json",),
        "test": ("mawps/mwptoolkit_split/testset.json",),
    }

    def read(self, split: str, data_dir: Path) -> LoadResult:
        out = self.builder(split)
        for entry in read_json_array(data_dir / self.split_files[split][0]):
            out.add(entry, lambda rec: read_id(rec.get("id"), "id"), mwp_fields)
        return out.result
