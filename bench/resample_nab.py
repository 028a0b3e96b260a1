"""Write a coarser copy of the NAB development set, to check settings across row spacings.

The development files are all at 5 minutes; production series and the NAB files kept aside
are not (hourly, 30-minute, irregular). This averages each file of ../shared/nab into
buckets of --every (same labels: windows are times) and writes DIR/data/... and
DIR/labels.json, outside the repository, for `vigil backtest`:

    .venv/bin/python bench/resample_nab.py /tmp/nab-1h --every 1h
    .venv/bin/vigil backtest /tmp/nab-1h/data --labels /tmp/nab-1h/labels.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

NAB = Path(__file__).resolve().parents[1].parent / "shared" / "nab"  # ../shared/nab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="directory to write (not in the repository)")
    parser.add_argument("--every", default="1h", help="bucket width, a pandas offset (default 1h)")
    parser.add_argument("--nab", type=Path, default=NAB, help="NAB set (default ../shared/nab)")
    args = parser.parse_args(argv)
    labels = json.loads((args.nab / "labels.json").read_text())
    for rel in sorted(labels):
        df = pd.read_csv(args.nab / "data" / rel, parse_dates=["timestamp"])
        df = (df.drop_duplicates("timestamp").set_index("timestamp")
              .resample(args.every).mean().dropna().reset_index())
        df["timestamp"] = df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
        out = args.output / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
        print(f"{rel}: {len(df)} rows", flush=True)
    (args.output / "labels.json").write_text(json.dumps(labels, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
