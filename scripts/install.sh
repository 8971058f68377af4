#!/usr/bin/env bash
# scripts/install.sh — install keel, its built-in plugins, the plugin ABI header and the plugin
# templates under a prefix, so that a keel run from there needs nothing from this source tree.
#
# Usage: bash scripts/install.sh [--build] [--bin-dir DIR] PREFIX
#
#   PREFIX/bin/keel                          the executable
#   PREFIX/lib/keel/plugins/libkeel-*.so     the built-in plugins (minirl, grpo, exact-match, …)
#   PREFIX/include/keel/keel_plugin.h        the plugin ABI header (`keel plugins include-dir`
#   PREFIX/include/keel/module.modulemap       prints PREFIX/include; the module map lets
#                                              Swift plugins `import KeelABI` with -I PREFIX/include)
#   PREFIX/share/keel/templates/LANG/KIND/   the templates `keel new-plugin` copies
#   PREFIX/share/doc/keel/                   docs/abi.md and docs/plugin-guide.md
#
# An installed keel finds all of these relative to its own executable (PREFIX/bin/keel →
# ../include, ../share/keel/templates, ../lib/keel/plugins) before looking anywhere else.
#
# Building: it installs the products found in DIR (--bin-dir; default: this checkout's
# .build/release, where `swift build -c release` puts them). It runs `swift build -c release`
# first only when asked (--build) or when keel or a built-in plugin is missing from the
# default directory. With --bin-dir it never builds: DIR must hold keel and every plugin.
#
# The installed keel links the Swift runtime dynamically, from the toolchain it was built with
# (its RUNPATH); install on a machine with that toolchain, or build with
# --static-swift-stdlib yourself. The files above are overwritten and PREFIX/share/keel/templates
# is replaced; nothing else under PREFIX is touched.
set -euo pipefail

# Prints the comment block above (from line 2 to the first line that is not a comment).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit "${1:-2}"; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=0
bin_dir=""
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=1 ;;
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir="$2"; shift ;;
    --bin-dir=*) bin_dir="${1#--bin-dir=}" ;;
    -h|--help) usage 0 ;;
    -*) echo "install.sh: unknown option '$1'" >&2; usage ;;
    *) [ -z "$prefix" ] || usage; prefix="$1" ;;
  esac
  shift
done
[ -n "$prefix" ] || usage

# The built-in plugins are the `plugin("keel-NAME", …)` products of Package.swift.
plugins=()
while IFS= read -r name; do plugins+=("$name"); done < <(
  grep -oE 'plugin\("keel-[a-z0-9-]+"' "$root/Package.swift" | sed -E 's/^plugin\("(keel-[a-z0-9-]+)"$/\1/')
[ ${#plugins[@]} -gt 0 ] || { echo "install.sh: no built-in plugins found in $root/Package.swift" >&2; exit 1; }

missing() {  # prints the products missing from $1
  local dir="$1" p
  [ -x "$dir/keel" ] || echo "keel"
  for p in "${plugins[@]}"; do [ -f "$dir/lib$p.so" ] || echo "lib$p.so"; done
}

if [ -n "$bin_dir" ]; then
  [ "$build" -eq 0 ] || { echo "install.sh: --build and --bin-dir exclude each other" >&2; exit 2; }
  gone="$(missing "$bin_dir")"
  if [ -n "$gone" ]; then
    echo "install.sh: $bin_dir lacks: $(echo "$gone" | tr '\n' ' ')(build them, or leave out --bin-dir)" >&2
    exit 1
  fi
else
  bin_dir="$root/.build/release"
  if [ "$build" -eq 1 ]; then
    echo "install.sh: building (swift build -c release, asked with --build)"
    (cd "$root" && swift build -c release)
  else
    gone="$(missing "$bin_dir")"
    if [ -n "$gone" ]; then
      echo "install.sh: building (swift build -c release): $bin_dir lacks $(echo "$gone" | tr '\n' ' ')"
      (cd "$root" && swift build -c release)
    fi
  fi
  gone="$(missing "$bin_dir")"
  [ -z "$gone" ] || { echo "install.sh: after the build, $bin_dir still lacks: $(echo "$gone" | tr '\n' ' ')" >&2; exit 1; }
fi

mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
install -d "$prefix/bin" "$prefix/lib/keel/plugins" "$prefix/include/keel" "$prefix/share/keel/templates"

install -m 0755 "$bin_dir/keel" "$prefix/bin/keel"
for p in "${plugins[@]}"; do
  install -m 0755 "$bin_dir/lib$p.so" "$prefix/lib/keel/plugins/lib$p.so"
done

install -m 0644 "$root/Sources/KeelABI/include/keel/keel_plugin.h" "$prefix/include/keel/keel_plugin.h"
# The source tree's module map sits one level up (include/module.modulemap); installed, it
# lives beside the header so that PREFIX/include holds no generic module.modulemap (which
# would collide with other packages'). swiftc -I PREFIX/include still finds it: Clang
# searches the subdirectories of an include path for module maps.
cat > "$prefix/include/keel/module.modulemap" <<'EOF'
module KeelABI {
  header "keel_plugin.h"
  export *
}
EOF
chmod 0644 "$prefix/include/keel/module.modulemap"

# Templates: source files only (no build outputs: keel new-plugin copies every top-level file
# of a template as text). A re-install replaces the previous templates.
rm -rf "$prefix/share/keel/templates"
install -d "$prefix/share/keel/templates"
(cd "$root/templates" && find . -type d \( -name target -o -name .build \) -prune -o -type f \
   ! -name '*.so' ! -name '*.dylib' ! -name '*.o' ! -name '*.a' -print) | while IFS= read -r f; do
  install -D -m 0644 "$root/templates/$f" "$prefix/share/keel/templates/${f#./}"
done

install -d "$prefix/share/doc/keel"
install -m 0644 "$root/docs/abi.md" "$root/docs/plugin-guide.md" "$prefix/share/doc/keel/"

echo "installed keel into $prefix:"
echo "  $prefix/bin/keel"
echo "  $prefix/lib/keel/plugins/ (${#plugins[@]} built-in plugins)"
echo "  $prefix/include/keel/keel_plugin.h"
echo "  $prefix/share/keel/templates/"
