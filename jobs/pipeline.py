"""Entry point for `ray job submit`: run a pipeline config on the cluster the job lands on.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.pipeline --config configs/quickstart.yaml [--run-dir DIR]

It only reads the config and calls the library (distill.pipeline); under a job, ray.init()
joins the job's cluster.
"""

from __future__ import annotations

import argparse
import json
import sys

from distill.config import load_config
from distill.pipeline import run_pipeline, user_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="Pipeline config YAML.")
    parser.add_argument("--run-dir", default=None, help="A folder every node mounts or an "
                        "object-store URI (s3://bucket/prefix); default $MATHDISTILL_RUNS/<name>, "
                        "else runs/<name> in the job's working dir (lost with it).")
    parser.add_argument("--until", default=None, help="Stop after this stage.")
    args = parser.parse_args(argv)
    try:
        manifest = run_pipeline(load_config(args.config), args.run_dir, until=args.until)
    except user_errors() as e:  # the user's to fix: say what, without a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v.get("status") for k, v in manifest["stages"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
