#!/usr/bin/env bash
# tests/guest/build.sh OUTDIR — build the tiny TCG test guest (kernel + busybox initramfs).
#
# Produces OUTDIR/vmlinuz and OUTDIR/initrd.gz (and prints their paths, one per line). The kernel is
# the newest Debian 12 linux-image-6.1.0-*-cloud-amd64 apt offers (override: ES_GUEST_KERNEL_PKG);
# the .deb is cached in OUTDIR/kernel/ and the result is reused while this script and pattern.sh are
# unchanged (OUTDIR/stamp), so only the first call pays (~5 s). Concurrent callers serialize on a lock.
#
# The guest boots with /dev/vda = the disk under test (virtio-blk), runs the test named on the kernel
# command line, prints one result line on the serial console and powers off:
#
#   es.test=write      write the pattern (tests/guest/pattern.sh: 4 MiB at disk offset 1 MiB, O_DIRECT,
#                      then fsync = NBD FLUSH)              -> "ES-GUEST-WRITE-OK"
#   es.test=read       read the region back (O_DIRECT) and compare
#                                                           -> "ES-GUEST-READ-OK" | "ES-GUEST-READ-BAD"
#   es.test=writeread  both, in one boot                    -> both lines above
#   es.test=loop       es.loops=N (default 20) rounds of write+read; for restart-under-load tests
#                                                           -> "ES-GUEST-LOOP-OK" | "ES-GUEST-LOOP-BAD"
# Anything that goes wrong prints "ES-GUEST-ERROR <why>" (and still powers off). The disk must be at
# least 5 MiB. The host verifies the bytes with `tests/guest/pattern.sh | cmp - <(dd ... skip=1M)`.
#
# Boot it (tests/guest/run.sh does this, with a timeout):
#   qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 512 -nodefaults -display none \
#     -no-reboot -serial stdio -monitor none -kernel OUTDIR/vmlinuz -initrd OUTDIR/initrd.gz \
#     -append 'console=ttyS0 quiet panic=-1 es.test=write' \
#     -blockdev driver=nbd,node-name=disk0,server.type=unix,server.path=SOCK,export=EXPORT \
#     -device virtio-blk-pci,drive=disk0
#
# Needs: apt (apt-get download, dpkg-deb), busybox-static, cpio, gzip, xz-utils (scripts/deps.sh).
set -euo pipefail

OUT=${1:?usage: tests/guest/build.sh OUTDIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk)

die() { echo "tests/guest/build.sh: $*" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.lock"
flock 9

stamp=$(cat "$HERE/build.sh" "$HERE/pattern.sh" | sha256sum | cut -d' ' -f1)
if [[ -s "$OUT/vmlinuz" && -s "$OUT/initrd.gz" && "$(cat "$OUT/stamp" 2>/dev/null)" == "$stamp" ]]; then
  printf '%s\n' "$OUT/vmlinuz" "$OUT/initrd.gz"
  exit 0
fi

# Not `busybox --list | grep -q`: under pipefail grep's early exit can SIGPIPE busybox (exit 141).
applets=$(/bin/busybox --list 2>/dev/null || true)
grep -qx insmod <<<"$applets" ||
  die "/bin/busybox (package busybox-static) is missing: run scripts/deps.sh"
for tool in cpio gzip xz dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/deps.sh"
done

# --- kernel: download once, keep the .deb ---------------------------------------------------------
mkdir -p "$OUT/kernel"
deb=$(ls "$OUT"/kernel/linux-image-*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z "$deb" ]]; then
  pick_pkg() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | cut -d' ' -f1 | sort -V | tail -n1
  }
  pkg=${ES_GUEST_KERNEL_PKG:-$(pick_pkg)}
  if [[ -z "$pkg" ]]; then
    # A fresh machine may have empty apt lists.
    apt-get update >&2 || die "apt-get update failed"
    pkg=$(pick_pkg)
  fi
  [[ -n "$pkg" ]] || die "apt offers no linux-image-6.1.0-*-cloud-amd64 package"
  sandbox=()
  ((EUID == 0)) && sandbox=(-o APT::Sandbox::User=root) # _apt cannot write into OUTDIR
  (cd "$OUT/kernel" && apt-get download "${sandbox[@]}" "$pkg" >&2) || die "apt-get download $pkg failed"
  deb=$(ls "$OUT"/kernel/linux-image-*.deb | sort -V | tail -n1)
fi

work=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/pkg" || die "dpkg-deb -x $deb failed"
kvers=("$work"/pkg/lib/modules/*)
kver=$(basename "${kvers[0]}")
[[ -n "$kver" && -f "$work/pkg/boot/vmlinuz-$kver" ]] || die "no vmlinuz in $deb"
moddir="$work/pkg/lib/modules/$kver"

# --- initramfs ---------------------------------------------------------------------------------------
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
"$HERE/pattern.sh" >"$root/pattern.bin"

: >"$root/modules.order"
for m in "${MODULES[@]}"; do
  # Module files may use - or _ in their names; built-in modules have no file.
  f=$(find "$moddir/kernel" -regextype posix-extended \
    -regex ".*/${m//_/[-_]}\.ko(\.xz|\.zst|\.gz)?" -print -quit)
  if [[ -z "$f" ]]; then
    grep -Eq "/${m//_/[-_]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null ||
      die "module $m is neither a file nor built in ($kver)"
    continue
  fi
  dst="$root/lib/modules/$m.ko" # busybox insmod needs an uncompressed .ko
  case "$f" in
    *.ko.xz) xz -dc "$f" >"$dst" ;;
    *.ko.zst) zstd -dcq "$f" >"$dst" || die "zstd is needed to unpack $f" ;;
    *.ko.gz) gzip -dc "$f" >"$dst" ;;
    *) cp "$f" "$dst" ;;
  esac
  echo "$m" >>"$root/modules.order"
done

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
# Extrasphere test guest: see tests/guest/build.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

off() { sync; poweroff -f; sleep 5; exit 1; } # exit -> kernel panic -> panic=-1 reboot -> qemu -no-reboot exits
fail() { echo "ES-GUEST-ERROR $*"; off; }

for m in $(cat /modules.order); do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done

test= loops=20
for w in $(cat /proc/cmdline); do
  case "$w" in
    es.test=*) test=${w#es.test=} ;;
    es.loops=*) loops=${w#es.loops=} ;;
  esac
done

i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && fail "no /dev/vda after 10 s"
  usleep 100000
done
size=$(blockdev --getsize64 /dev/vda) || fail "blockdev --getsize64 /dev/vda"
[ "$size" -ge 5242880 ] || fail "disk is $size bytes, need at least 5 MiB"

do_write() {
  dd if=/pattern.bin of=/dev/vda bs=1M seek=1 oflag=direct conv=fsync,notrunc status=none
}
do_read() { # returns 0 if the region matches the pattern
  dd if=/dev/vda of=/tmp/got bs=1M skip=1 count=4 iflag=direct status=none || return 2
  cmp /tmp/got /pattern.bin >/tmp/cmp 2>&1 && return 0
  echo "ES-GUEST-DIFF $(cat /tmp/cmp) sha256=$(sha256sum /tmp/got | cut -d' ' -f1)"
  return 1
}
report_read() {
  do_read
  case $? in
    0) echo "ES-GUEST-READ-OK" ;;
    1) echo "ES-GUEST-READ-BAD" ;;
    *) fail "read /dev/vda" ;;
  esac
}

case "$test" in
  write)
    do_write || fail "write /dev/vda"
    echo "ES-GUEST-WRITE-OK"
    ;;
  read)
    report_read
    ;;
  writeread)
    do_write || fail "write /dev/vda"
    echo "ES-GUEST-WRITE-OK"
    report_read
    ;;
  loop)
    n=0
    while [ $n -lt "$loops" ]; do
      n=$((n + 1))
      do_write || fail "write /dev/vda (round $n)"
      do_read || { echo "ES-GUEST-LOOP-BAD round $n"; off; }
    done
    echo "ES-GUEST-LOOP-OK $n"
    ;;
  *)
    fail "no es.test=write|read|writeread|loop on the kernel command line"
    ;;
esac
off
INIT
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
  gzip -9n >"$work/initrd.gz" || die "cpio/gzip of the initramfs failed"
cp "$work/pkg/boot/vmlinuz-$kver" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$OUT/vmlinuz"
mv -f "$work/initrd.gz" "$OUT/initrd.gz"
echo "$kver" >"$OUT/kernel-version"
echo "$stamp" >"$OUT/stamp"
printf '%s\n' "$OUT/vmlinuz" "$OUT/initrd.gz"
