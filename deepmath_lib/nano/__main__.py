"""`python -m deepmath_lib.nano [--force] [--ship] [--measure N] [--profile NAME] [--seed S]`: build the nano model,
optionally copy the build into the package (`--ship`) and measure a profile's model in the agent loop on N heldout
nano problems (printed as JSON). `--force --ship` is the one command that remakes the shipped base weights; the build
is deterministic, so on the same versions the files come out the same, bit for bit."""

from __future__ import annotations

import argparse
import json

from ..backends import make_backend
from ..profiles import get_profile
from .build import build_nano, ship
from .measure import measure
from .problems import generate_problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m deepmath_lib.nano",
        description="Build the nano model (cached by recipe hash); optionally measure a model in the agent loop.",
    )
    ap.add_argument("--force", action="store_true", help="rebuild even when the cached build is complete")
    ap.add_argument("--ship", action="store_true", help="copy the build into deepmath_lib/weights/nano-base")
    ap.add_argument("--measure", type=int, default=0, metavar="N", help="heldout problems to run (0: skip)")
    ap.add_argument(
        "--profile", default="nano", help="profile whose model, backend and sampling are measured"
    )
    ap.add_argument("--seed", type=int, default=0, help="sampling seed of the measurement")
    args = ap.parse_args(argv)
    built = build_nano(force=args.force)
    print(built)
    if args.ship:
        print(f"shipped: {ship(built)}")
    if args.measure:
        profile = get_profile(args.profile)
        backend = make_backend(profile)
        try:
            report = measure(backend, profile, generate_problems(args.measure, "heldout"), seed=args.seed)
        finally:
            backend.close()
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
