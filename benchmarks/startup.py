"""How long the command line takes to answer what needs no video: a mistyped option, --help,
--cfg job; against `python -c pass` (the interpreter's own start) and against `import torch`.

    python benchmarks/startup.py [--rounds 5]

Prints a table of medians; the ratio to `python -c pass` is what compares across machines.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
    "main.py batch_sise=2 (a mistyped option)": [os.path.join(ROOT, "main.py"), "batch_sise=2"],
    "main.py --help": [os.path.join(ROOT, "main.py"), "--help"],
    "main.py --cfg job": [os.path.join(ROOT, "main.py"), "--cfg", "job"],
}


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):  # interleaved, so that a drift of the machine touches every command alike
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    base = statistics.median(times["python -c pass"])
    print(f"medians of {args.rounds} rounds, {os.cpu_count()} cores\n")
    print("| command | seconds | x python -c pass |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / base:.1f} |")


if __name__ == "__main__":
    main()
