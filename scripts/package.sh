#!/usr/bin/env bash
# Builds the Debian package of the controller: bramble_<version>_<arch>.deb.
#
#   scripts/package.sh [--binary PATH] [--out DIR] [--compress zstd|xz|gzip]
#
#   --binary PATH  package this already-built `bramble` binary (the tests pass theirs);
#                  default: `cargo build --release --locked -p bramble` and its output
#   --out DIR      where the .deb goes (default: target/debian, under CARGO_TARGET_DIR
#                  if set)
#   --compress C   dpkg-deb's compressor (default zstd: a second of CPU where xz takes
#                  half a minute, for a package 40% larger; Debian 12's dpkg reads it)
#
# Built with plain `dpkg-deb --build` from a staged tree rather than `cargo deb`: every
# file of the package is in packaging/ (readable, reviewed, and what the tests check),
# and nothing has to be compiled or installed from crates.io to build it: dpkg-deb and
# dpkg-shlibdeps come with Debian (dpkg, dpkg-dev). The version is the workspace's
# (Cargo.toml), with `+git<commits since the tag>.<commit>` when HEAD is not the tag
# v<version>, and `.dirty` with uncommitted changes; the architecture is
# `dpkg --print-architecture`; libc's and libgcc's versions in Depends come from
# dpkg-shlibdeps on the binary. The package's contents are described in docs/packaging.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

binary=
out=
compress=zstd
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --compress) compress=${2:?--compress needs zstd, xz or gzip}; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for tool in dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null ||
    { echo "error: $tool not found (apt-get install dpkg-dev)" >&2; exit 1; }
done

target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "$binary" ]; then
  cargo build --release --locked -p bramble
  binary=$target_dir/release/bramble
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable" >&2; exit 1; }
out=${out:-$target_dir/debian}
mkdir -p "$out"

# The workspace version, plus where HEAD is if it is not the release tag.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "error: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
if git rev-parse --git-dir >/dev/null 2>&1; then
  if [ "$(git describe --tags --exact-match --match "v$version" 2>/dev/null)" != "v$version" ]; then
    if since=$(git describe --tags --long --match 'v*' 2>/dev/null); then
      count=$(echo "$since" | sed 's/.*-\([0-9]*\)-g[0-9a-f]*$/\1/')
    else
      count=$(git rev-list --count HEAD)
    fi
    version="$version+git$count.$(git rev-parse --short=10 HEAD)"
  fi
  git diff --quiet HEAD -- 2>/dev/null || version="$version.dirty"
fi
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
pkg=$repo/packaging
install -D -m 0755 "$binary" "$root/usr/bin/bramble"
strip --strip-debug "$root/usr/bin/bramble" 2>/dev/null || true
install -D -m 0644 "$pkg/bramble.toml" "$root/etc/bramble/bramble.toml"
install -D -m 0644 "$pkg/bramble.service" "$root/usr/lib/systemd/system/bramble.service"
install -D -m 0644 "$pkg/modules-load.conf" "$root/usr/lib/modules-load.d/bramble.conf"
install -D -m 0644 "$pkg/dbus-ganesha.conf" "$root/usr/share/dbus-1/system.d/bramble-ganesha.conf"
install -D -m 0644 "$pkg/run-as-root.conf" "$root/usr/share/doc/bramble/examples/run-as-root.conf"
install -D -m 0644 docs/packaging.md "$root/usr/share/doc/bramble/packaging.md"
install -D -m 0644 README.md "$root/usr/share/doc/bramble/README.md"
# Debian keeps the licence text of Apache-2.0 in common-licenses.
printf 'Bramble\nLicense: Apache-2.0\n See /usr/share/common-licenses/Apache-2.0.\n' \
  >"$stage/copyright"
install -D -m 0644 "$stage/copyright" "$root/usr/share/doc/bramble/copyright"

# Depends: the shared libraries' packages (dpkg-shlibdeps wants a debian/control).
mkdir -p "$stage/shl/debian"
printf 'Source: bramble\n\nPackage: bramble\nArchitecture: any\n' >"$stage/shl/debian/control"
shlibs=$(cd "$stage/shl" && dpkg-shlibdeps -O -e "$root/usr/bin/bramble" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "error: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SHLIBS@/$shlibs/" \
  -e "s/@INSTALLED_SIZE@/$size/" "$pkg/control.in" >"$root/DEBIAN/control"
install -m 0644 "$pkg/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$pkg/$script" "$root/DEBIAN/$script"
done

deb=$out/bramble_${version}_${arch}.deb
dpkg-deb --build "-Z$compress" --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
