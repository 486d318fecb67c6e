"""``python -I -B -m plughost.sandbox.run_script --policy JSON -- SCRIPT ARGS...``

The trusted runner for a stand-alone script that executes plugin code (the manifest
reader): applies the sandbox policy in this process, then runs SCRIPT as ``__main__`` with
``sys.argv = [SCRIPT, *ARGS]``. A policy that cannot be applied (strict mode) ends the
process with exit code 4 before the script starts.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from plughost.sandbox.policy import RunnerPolicy
from plughost.sandbox.runner import SandboxError, enter

EXIT_SANDBOX_FAILED = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plughost.sandbox.run_script")
    parser.add_argument("--policy", required=True)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        enter(RunnerPolicy.from_json(args.policy))
    except (SandboxError, ValueError, TypeError) as exc:
        sys.stderr.write(f"sandbox: {exc}\n")
        return EXIT_SANDBOX_FAILED
    sys.argv = [args.script, *args.args]
    runpy.run_path(args.script, run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
