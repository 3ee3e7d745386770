"""Write the reference server's test splits as the labelled CSV datasets that scenarios replay.

    python -m loadgrade.servers.make_datasets [--out scenarios/data] [--seed 0]

The files are committed; a unit test regenerates them and compares bytes, so they cannot drift from the models.
Floats are written as Python's shortest round-tripping ``repr`` (``0.0``, ``0.0380759064334241``): compact for the
digits pixels, and lossless for the diabetes features, so a prediction on values parsed back from the CSV equals the
offline prediction bit for bit.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from loadgrade.servers.models import MODEL_NAMES, test_split

__all__ = ["DEFAULT_OUT", "dataset_path", "write_datasets"]

_CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "scenarios" / "data"
# the repository's committed splits in a checkout; installed, scenarios/data under the current folder
DEFAULT_OUT = _CHECKOUT_DATA if _CHECKOUT_DATA.is_dir() else Path("scenarios") / "data"


def _format_float(value: object) -> str:
    # repr of a Python float is the shortest string that parses back to the same double; np.float64's repr would
    # be "np.float64(...)", hence the float() first.
    return repr(float(value))  # type: ignore[arg-type]


def dataset_path(out_dir: Path, name: str) -> Path:
    """Where the test split of ``name`` lives under ``out_dir``: ``<out_dir>/<name>_test.csv``."""
    return Path(out_dir) / f"{name}_test.csv"


def write_datasets(out_dir: Path = DEFAULT_OUT, *, seed: int = 0) -> list[Path]:
    """Write ``digits_test.csv`` and ``diabetes_test.csv`` into ``out_dir`` (created if missing).

    Returns the paths written, in ``MODEL_NAMES`` order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in MODEL_NAMES:
        path = dataset_path(out_dir, name)
        # "\n" whatever the platform, so the committed bytes are reproducible everywhere
        test_split(name, seed=seed).to_csv(path, index=False, float_format=_format_float, lineterminator="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgrade.servers.make_datasets",
        description="Write the reference server's test splits as labelled CSV files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write the CSV files into")
    parser.add_argument("--seed", type=int, default=0, help="split seed; must match the server's --seed")
    args = parser.parse_args(argv)
    for path in write_datasets(args.out, seed=args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
