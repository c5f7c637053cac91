#!/bin/sh
# Gives every Cargo manifest under the current directory empty targets where its sources are
# missing: a library `src/lib.rs`, and `fn main() {}` for the package root's `src/main.rs` and
# for every path a [lib], [[bin]], [[test]], [[bench]] or [[example]] section names.
#
# The Dockerfile runs it on the manifests and Cargo.lock alone, then builds: that layer compiles
# every dependency and is reused until a manifest or the lock file changes.
# scripts/check-dockerfile.sh runs it the same way and asks cargo to resolve the result.
# Existing files are never touched.
set -eu
stub_main() {
  [ -e "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  echo 'fn main() {}' >"$1"
}
find . -name Cargo.toml -not -path './target/*' | while read -r manifest; do
  dir=$(dirname "$manifest")
  mkdir -p "$dir/src"
  [ -e "$dir/src/lib.rs" ] || : >"$dir/src/lib.rs"
  awk '
    /^[[:space:]]*\[/ { target = ($0 ~ /^[[:space:]]*\[\[?(lib|bin|test|bench|example)\]\]?[[:space:]]*$/) }
    target && /^[[:space:]]*path[[:space:]]*=/ {
      if (match($0, /"[^"]*"/)) print substr($0, RSTART + 1, RLENGTH - 2)
    }
  ' "$manifest" | while read -r path; do
    stub_main "$dir/$path"
  done
done
stub_main src/main.rs
