"""``hmr-ros synth``: write a synthetic dataset and/or a preview contact sheet.

    hmr-ros synth --out DIR --num N [--size 224] [--seed 0] [--shard-size 256] [--workers 1]
    hmr-ros synth --preview out.png [--num 8] [--size 224] [--seed 0]

For the package CLI table (``hmr_ros.cli.COMMANDS``): ``add_synth_arguments`` and ``run_synth``
follow its (add arguments, run) pair; ``synth_main(argv)`` is the standalone entry point.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["add_synth_arguments", "run_synth", "synth_main", "HELP"]

HELP = "generate synthetic occlusion training data (npz shards) or a preview PNG"


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output directory for shards + dataset.json")
    parser.add_argument("--preview", metavar="PNG",
                        help="write a contact sheet of the first --num samples to this PNG")
    parser.add_argument("--num", type=int, default=None,
                        help="number of samples (default 8 with --preview alone, else required)")
    parser.add_argument("--size", type=int, default=224, help="square image side (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--shard-size", type=int, default=256,
                        help="samples per npz shard (default 256)")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel processes writing shards (same bytes; default 1)")
    parser.add_argument("--compress", action="store_true",
                        help="deflate the shards (smaller; no memory-mapped random access)")
    parser.add_argument("--with-vertices", action="store_true",
                        help="also store people_vertices (P x V x 3 per sample; large)")
    parser.add_argument("--p-occ", type=float, default=None, help="occluder probability")
    parser.add_argument("--p-multi", type=float, default=None,
                        help="probability of other people in the crop")
    parser.add_argument("--photos", default=None,
                        help="photo folder for backgrounds and prints: 'auto' (default: "
                             "$HMR_ROS_PHOTOS or ~/.cache/hmr_ros/photos if present), 'none', "
                             "or a directory (fetch: python -m hmr_ros.data.synthetic.photos "
                             "fetch)")
    parser.add_argument("--no-realism", action="store_true",
                        help="plain renders: no painted heads, photos, low resolution, motion "
                             "blur or JPEG (the format-1 look)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``hmr-ros synth`` with parsed arguments; returns the exit status."""
    from .config import SynthConfig

    if not args.out and not args.preview:
        raise ValueError("give --out DIR (dataset) and/or --preview PNG")
    overrides = {"size": args.size}
    if args.p_occ is not None:
        overrides["p_occ"] = args.p_occ
    if args.p_multi is not None:
        overrides["p_multi"] = args.p_multi
    if getattr(args, "no_realism", False):
        from .config import LEGACY

        overrides.update(LEGACY)
    if getattr(args, "photos", None):
        overrides["photos"] = args.photos
    config = SynthConfig(**overrides)
    num = args.num
    if num is None:
        if args.out:
            raise ValueError("--out needs --num")
        num = 8
    if args.out:
        from .writer import write_dataset

        path = write_dataset(args.out, num, config, seed=args.seed, shard_size=args.shard_size,
                             workers=args.workers, compress=args.compress,
                             with_vertices=args.with_vertices, progress=not args.quiet)
        print(f"wrote {num} samples to {path.parent} ({path.name})")
    if args.preview:
        from .generator import SyntheticGenerator
        from .preview import write_preview

        gen = SyntheticGenerator(config, args.seed)
        count = min(num, 64)
        path = write_preview(args.preview, [gen.sample(i) for i in range(count)])
        print(f"wrote {path} ({count} samples)")
    return 0


def synth_main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry: parse ``argv`` (default ``sys.argv[1:]``) and run."""
    parser = argparse.ArgumentParser(prog="hmr-ros synth", description=HELP)
    add_synth_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_synth(args)
    except (ValueError, OSError) as exc:
        print(f"hmr-ros synth: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(synth_main())
