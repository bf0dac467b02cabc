#!/usr/bin/env bash
# The GPU kit's one command on the device machine, from the checkout's root, with .gpukit carried:
#   device run: command `bash benchmarks/gpu/run.sh`, carry [".gpukit"]   (results in $OUT)
# framestamp is not installed there: bootstrap.py installs the kit's wheels into /tmp/framestamp-site,
# unpacks espeak-ng's .debs beside them, lays out the framestamp package as links to this checkout,
# and starts `python3 -m framestamp gpu-kit run` in that environment (working in the site folder).
# Extra arguments go to `run`, e.g. --steps latency,parity.
set -u
cd "$(dirname "$0")/../.."
out="$(cd "${OUT:?set OUT to the folder for the results}" && pwd)"
exec python3 benchmarks/gpu/bootstrap.py --kit .gpukit --site /tmp/framestamp-site -- \
    -m framestamp gpu-kit run --out "$out" "$@"
