"""plughost benchmark harness: `make bench` (or `python -m bench.run`) writes bench/results/."""
