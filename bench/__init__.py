"""The benchmark suite: scripts that print a table and save their numbers as JSON in bench_results/.

    python -m bench                  # lists the benchmarks
    python -m bench NAME [ARGS...]   # runs one (the same as python bench/NAME.py ARGS...)

Compare side by side within one run (ratios and medians): these machines are noisy.
"""
