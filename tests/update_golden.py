"""Regenerate the golden numbers of the tiny training run (tests/golden/train_tiny.json).

Run by hand, never in CI, after an intended change to training, and say why in the commit::

    .venv/bin/python tests/update_golden.py

tests/test_train.py::test_golden_losses_and_accuracy only compares with the stored values; this
script is the one way they change. It runs the same training as the test (``_golden_run``, one
intra-op thread), writes the file, and prints the old and new values.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(golden: Path | None = None) -> dict:
    import torch

    import test_train

    golden = Path(golden) if golden is not None else test_train.GOLDEN
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the test's one_thread fixture: a fixed reduction order
    try:
        with tempfile.TemporaryDirectory(prefix="mathdistill-golden-") as tmp:
            got = test_train._golden_run(Path(tmp))
    finally:
        torch.set_num_threads(before)
    old = json.loads(golden.read_text()) if golden.is_file() else None
    golden.parent.mkdir(parents=True, exist_ok=True)
    golden.write_text(json.dumps(got, indent=1) + "\n")
    for key in ("steps", "last_loss", "accuracy"):
        print(f"{key}: {None if old is None else old.get(key)} -> {got[key]}")
    print(f"wrote {golden}")
    return got


if __name__ == "__main__":
    main()
