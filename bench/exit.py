"""What `os._exit` at the end of a `sweep` command saves: `python -m bench.exit [--rounds 5]`.

The `sweep` entry point (`sweep.cli.main.entry`) flushes the streams and leaves with `os._exit`,
skipping the interpreter's teardown of the modules MLflow, SQLAlchemy, pandas and matplotlib
import. This runs the same commands both ways, rounds interleaved, each a fresh process on a
home with one small finished study: `entry()` (os._exit) against `main()` (a normal exit).
Prints a table and writes bench/results/exit.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save, table
from tests.helpers import spec_text, write_idx_dataset

ARMS = {
    "os._exit (entry)": "from sweep.cli.main import entry; entry()",
    "normal exit (main)": "import sys; from sweep.cli.main import main; sys.exit(main())",
}


def timed(code: str, args: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{args} failed: {done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_idx_dataset(root / "data")
        study = root / "s.toml"
        study.write_text(spec_text("s", data, epochs=1, batch="[16]"))
        home = ["--home", str(root / "home")]
        timed(ARMS["os._exit (entry)"], ["run", str(study), *home])
        commands = {
            "sweep runs s": ["runs", "s", *home],
            "sweep studies": ["studies", *home],
            "sweep report s": ["report", "s", *home],
        }
        seconds: dict[str, dict[str, list[float]]] = {c: {a: [] for a in ARMS} for c in commands}
        for _ in range(args.rounds):
            for command, argv in commands.items():
                for arm, code in ARMS.items():
                    seconds[command][arm].append(timed(code, argv))
    rows = []
    for command, arms in seconds.items():
        fast, slow = (statistics.median(arms[a]) for a in ARMS)
        rows.append([command, f"{fast:.2f}", f"{slow:.2f}", f"{slow - fast:+.2f}"])
    print(table(["command (median s)", *ARMS, "teardown"], rows))
    save("exit", {"rounds": args.rounds, "seconds": seconds})


if __name__ == "__main__":
    main()
