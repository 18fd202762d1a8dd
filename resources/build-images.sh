#!/bin/bash
# Build Ember's Linux guest images from Debian packages, cached outside the
# checkout. See resources/README.md.
#
# Usage: resources/build-images.sh OUTDIR      (make images: build/images)
#
# OUTDIR receives vmlinux, bzImage, initramfs.cpio (symlinks into the cache),
# rootfs.ext4 (a private copy: guests may write to it), cmdline-host.txt and
# image-key.txt.
#
# Environment:
#   EMBER_IMAGE_CACHE  cache root (default /var/cache/ember/images)
#   EMBER_IMAGE_JOBS   make -j for the kernel (default 2)
#   EMBER_IMAGE_KEEP   cache entries kept after a build (default 3)
set -euo pipefail

OUT=${1:?usage: build-images.sh OUTDIR}
RES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${EMBER_IMAGE_CACHE:-/var/cache/ember/images}
JOBS=${EMBER_IMAGE_JOBS:-2}
KEEP=${EMBER_IMAGE_KEEP:-3}
LINUX_PKG=linux-source-6.1
LINUX_TAR=/usr/src/linux-source-6.1.tar.xz
BUSYBOX=/bin/busybox
BUSYBOX_PKG=busybox-static
IMAGES=(vmlinux bzImage initramfs.cpio rootfs.ext4 cmdline-host.txt)
T0=$SECONDS

log() { echo "[images] $*"; }
die() {
	echo "[images] ERROR: $*" >&2
	exit 1
}

pkg_version() {
	dpkg-query -W -f='${Version}' "$1" 2>/dev/null ||
		die "package $1 is not installed (apt-get install $1)"
}

for tool in gcc make bison flex bc lz4 mkfs.ext4 e2fsck xz sha256sum flock; do
	command -v "$tool" >/dev/null || die "missing tool: $tool (tools/install-deps.sh installs the image build dependencies)"
done
[ -r "$LINUX_TAR" ] || die "$LINUX_TAR not found (apt-get install $LINUX_PKG)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt-get install $BUSYBOX_PKG)"

# --- cache key: every input that changes what comes out --------------------------
PATCHES=()
while IFS= read -r p; do PATCHES+=("$p"); done < <(cd "$RES" && find patches -name '*.patch' | LC_ALL=C sort)
key_inputs() {
	echo "# Ember guest image inputs (the cache key is the sha256 of this text)"
	echo "pkg $LINUX_PKG $(pkg_version "$LINUX_PKG")"
	echo "pkg $BUSYBOX_PKG $(pkg_version "$BUSYBOX_PKG")"
	echo "busybox $(sha256sum <"$BUSYBOX" | cut -d' ' -f1)"
	echo "gcc $(gcc -dumpfullversion) $(gcc -dumpmachine)"
	echo "e2fsprogs $(pkg_version e2fsprogs)"
	local f
	for f in kernel.config "${PATCHES[@]}" init/init.c mkrootfs.sh build-images.sh cmdline-host.txt; do
		echo "file $f $(sha256sum <"$RES/$f" | cut -d' ' -f1)"
	done
}
INPUTS=$(key_inputs)
KEY=$(printf '%s\n' "$INPUTS" | sha256sum | cut -d' ' -f1)
ENTRY="$CACHE_ROOT/$KEY"
STAMP=".complete"

install_output() {
	mkdir -p "$OUT"
	local f
	for f in vmlinux bzImage initramfs.cpio; do
		ln -sfn "$ENTRY/$f" "$OUT/.$f.new"
		mv -Tf "$OUT/.$f.new" "$OUT/$f"
	done
	# Guests may write to their disk: never hand out the cached image itself.
	cp --sparse=always -f "$ENTRY/rootfs.ext4" "$OUT/.rootfs.ext4.new"
	chmod 0644 "$OUT/.rootfs.ext4.new"
	mv -Tf "$OUT/.rootfs.ext4.new" "$OUT/rootfs.ext4"
	cp -f "$ENTRY/cmdline-host.txt" "$OUT/cmdline-host.txt"
	printf '%s\n' "$KEY" >"$OUT/image-key.txt"
}

if [ -f "$ENTRY/$STAMP" ]; then
	touch "$ENTRY" 2>/dev/null || true # recently used: pruned last
	install_output
	log "cached: $ENTRY -> $OUT ($((SECONDS - T0)) s)"
	exit 0
fi

mkdir -p "$CACHE_ROOT" 2>/dev/null || die "cannot create $CACHE_ROOT (run as root, or set EMBER_IMAGE_CACHE to a writable directory)"
[ -w "$CACHE_ROOT" ] || die "$CACHE_ROOT is not writable (run as root, or set EMBER_IMAGE_CACHE)"

# One build at a time per cache root (the kernel work tree is shared); a run
# that waited finds the entry the other one finished.
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
	log "another build holds $CACHE_ROOT/.lock; waiting"
	flock 9
fi
if [ -f "$ENTRY/$STAMP" ]; then
	install_output
	log "cached (built by a concurrent run): $ENTRY -> $OUT ($((SECONDS - T0)) s)"
	exit 0
fi
# A directory without the stamp is not ours to trust (we only ever rename
# complete builds into place, so this is debris from elsewhere).
[ -e "$ENTRY" ] && rm -rf "$ENTRY"

log "building images, key $KEY"
log "inputs:"
printf '%s\n' "$INPUTS" | sed -n 's/^/[images]   /;2,$p'
TMP=$(mktemp -d "$CACHE_ROOT/.tmp.$KEY.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- kernel source tree: extracted and patched once per (package, patches) --------
WORK="$CACHE_ROOT/work"
SRC_ID=$( (pkg_version "$LINUX_PKG"; echo; for p in "${PATCHES[@]}"; do sha256sum <"$RES/$p"; done) |
	sha256sum | cut -c1-16)
SRC="$WORK/src-$SRC_ID"
OBJ="$WORK/obj-$SRC_ID"
mkdir -p "$WORK"
if [ ! -f "$SRC/.ember-src-ok" ]; then
	rm -rf "$SRC" "$OBJ" "$WORK/.src-new"
	mkdir -p "$WORK/.src-new"
	log "extracting $LINUX_TAR ($LINUX_PKG $(pkg_version "$LINUX_PKG"))"
	tar -xf "$LINUX_TAR" -C "$WORK/.src-new" --strip-components=1
	for p in "${PATCHES[@]}"; do
		log "applying $p"
		patch -d "$WORK/.src-new" -p1 --forward --batch --quiet <"$RES/$p" ||
			die "patch $p does not apply to $LINUX_PKG $(pkg_version "$LINUX_PKG")"
	done
	touch "$WORK/.src-new/.ember-src-ok"
	mv -T "$WORK/.src-new" "$SRC"
else
	log "reusing kernel tree $SRC"
	touch "$SRC"
fi
mkdir -p "$OBJ"

# Drop cache entries and work trees that are not among the newest $KEEP.
prune() {
	local old
	old=$(find "$CACHE_ROOT" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{64\}' \
		-printf '%T@ %p\n' | sort -rn | tail -n +"$((KEEP + 1))" | cut -d' ' -f2-)
	for d in $old; do
		log "pruning old cache entry $d"
		rm -rf "$d"
	done
	old=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'src-*' -printf '%T@ %p\n' |
		sort -rn | tail -n +"$((KEEP + 1))" | cut -d' ' -f2-)
	for d in $old; do
		log "pruning old kernel tree $d"
		rm -rf "$d" "$WORK/obj-${d##*/src-}"
	done
}

# --- kernel configuration: allnoconfig + our fragment, then verified --------------
KMAKE=(make -C "$SRC" O="$OBJ" KBUILD_BUILD_USER=ember KBUILD_BUILD_HOST=ember)
log "configuring: allnoconfig + resources/kernel.config"
"${KMAKE[@]}" -s allnoconfig KCONFIG_ALLCONFIG="$RES/kernel.config"
bad=0
while IFS= read -r line; do
	case "$line" in
	"# CONFIG_"*" is not set")
		opt=${line#\# }
		opt=${opt%% *}
		if grep -q "^$opt=" "$OBJ/.config"; then
			echo "[images] ERROR: kernel.config asks '$line' but .config has: $(grep "^$opt=" "$OBJ/.config")" >&2
			bad=1
		fi
		;;
	CONFIG_*=*)
		opt=${line%%=*}
		if ! grep -qxF "$line" "$OBJ/.config"; then
			got=$(grep -E "^$opt=|^# $opt is not set" "$OBJ/.config" || echo "(absent: unknown option or unmet dependency)")
			echo "[images] ERROR: kernel.config asks '$line' but .config has: $got" >&2
			bad=1
		fi
		;;
	esac
done <"$RES/kernel.config"
[ "$bad" = 0 ] || die "Kconfig did not honour resources/kernel.config (see above)"
log "configuration verified: $(grep -c '^CONFIG_.*=' "$RES/kernel.config") options set, $(grep -c '^# CONFIG_.* is not set' "$RES/kernel.config") off, as asked"

# --- kernel build ------------------------------------------------------------------
log "building kernel: make -j$JOBS bzImage (vmlinux on the way)"
K0=$SECONDS
"${KMAKE[@]}" -j"$JOBS" bzImage
log "kernel built in $((SECONDS - K0)) s"
cp "$OBJ/vmlinux" "$TMP/vmlinux"
cp "$OBJ/arch/x86/boot/bzImage" "$TMP/bzImage"
cp "$OBJ/.config" "$TMP/kernel.config.full"
readelf -n "$TMP/vmlinux" | grep -q 'Xen.*0x00000012' ||
	die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); is CONFIG_PVH set?"

# --- init and user space images -----------------------------------------------------
log "building init (static)"
gcc -static -Os -s -Wall -Wextra -Werror -o "$TMP/init" "$RES/init/init.c"
gcc -O2 -o "$TMP/gen_init_cpio" "$SRC/usr/gen_init_cpio.c"
log "building initramfs.cpio and rootfs.ext4"
"$RES/mkrootfs.sh" "$TMP/init" "$BUSYBOX" "$TMP/gen_init_cpio" "$TMP"
rm -f "$TMP/gen_init_cpio"
cp "$RES/cmdline-host.txt" "$TMP/cmdline-host.txt"
printf '%s\n' "$INPUTS" >"$TMP/inputs.txt"

# --- publish atomically: the stamp is written last, then one rename --------------------
for f in "${IMAGES[@]}"; do [ -s "$TMP/$f" ] || die "missing output $f"; done
chmod 0444 "$TMP"/vmlinux "$TMP"/bzImage "$TMP"/initramfs.cpio "$TMP"/rootfs.ext4
date -u +%FT%TZ >"$TMP/$STAMP"
chmod 0755 "$TMP"
mv -T "$TMP" "$ENTRY"
trap - EXIT
prune
install_output
log "done in $((SECONDS - T0)) s: $ENTRY -> $OUT"
# shellcheck disable=SC2012 # a listing for people
ls -lL "$OUT" | sed 's/^/[images]   /'
