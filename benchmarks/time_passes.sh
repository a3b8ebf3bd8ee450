#!/bin/sh
# RUSTC_WORKSPACE_WRAPPER for benchmarks/glue_cost.py: rustc ($1) with -Z time-passes,
# for the crate being built only (the stable compiler takes -Z with RUSTC_BOOTSTRAP=1).
# cargo's own queries (`rustc -vV`, `--print`) pass through unchanged.
rustc="$1"
shift
case " $* " in
  *" --crate-name "*) RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" -Z time-passes ;;
  *) exec "$rustc" "$@" ;;
esac
