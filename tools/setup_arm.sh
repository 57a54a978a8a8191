#!/usr/bin/env bash
# Installs what ARM (aarch64) builds and their emulated checks need; safe to run again.
#
#   - Debian packages: g++-aarch64-linux-gnu (cross linker, aarch64 libc/libstdc++ under
#     /usr/aarch64-linux-gnu) and qemu-user-static (qemu-aarch64-static runs the checks);
#   - the aarch64 TVM runtime: the aarch64 apache-tvm and apache-tvm-ffi wheels, downloaded into a cache
#     folder and unpacked to <cache>/runtime/{lib,include}: libtvm_runtime.so, libtvm_ffi.so and the
#     tvm/ffi + dlpack headers the board runner is compiled against.
#
# The cache folder is $GRAPHPRESS_AARCH64_RUNTIME's parent when that is set, else
# ${XDG_CACHE_HOME:-~/.cache}/graphpress/aarch64 (what backends.arm_runtime looks at by default).
# Every step is skipped when its result is already there.
set -euo pipefail

TVM_VERSION=0.27.0.post1
TVM_FFI_VERSION=0.1.14.post0
# The aarch64 wheels are tagged manylinux_2_27/2_28 (tvm) and manylinux_2_24/2_28 (tvm-ffi);
# pip expands manylinux_2_28 to every older compatible tag.
PLATFORM=manylinux_2_28_aarch64

if [[ -n "${GRAPHPRESS_AARCH64_RUNTIME:-}" ]]; then
    runtime="$GRAPHPRESS_AARCH64_RUNTIME"
    cache="$(dirname "$runtime")"
else
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/graphpress/aarch64"
    runtime="$cache/runtime"
fi
python="${PYTHON:-python3}"

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    echo "setup_arm: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$runtime/.tvm-$TVM_VERSION-ffi-$TVM_FFI_VERSION"
if [[ ! -f "$stamp" ]]; then
    wheels="$cache/wheels"
    mkdir -p "$wheels"
    if ! ls "$wheels"/apache_tvm-"$TVM_VERSION"-*aarch64*.whl >/dev/null 2>&1 \
        || ! ls "$wheels"/apache_tvm_ffi-"$TVM_FFI_VERSION"-*aarch64*.whl >/dev/null 2>&1; then
        echo "setup_arm: downloading the aarch64 apache-tvm $TVM_VERSION and apache-tvm-ffi $TVM_FFI_VERSION wheels"
        "$python" -m pip download --quiet --no-deps --only-binary=:all: --platform "$PLATFORM" \
            --dest "$wheels" "apache-tvm==$TVM_VERSION" "apache-tvm-ffi==$TVM_FFI_VERSION"
    fi
    staging="$(mktemp -d "$cache/.runtime.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    # Only the runtime: the 240 MB compiler library stays in the wheel.
    "$python" - "$wheels" "$staging" "$TVM_VERSION" "$TVM_FFI_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, staging, tvm_version, ffi_version = sys.argv[1:]
wanted = {
    f"apache_tvm-{tvm_version}-": {"tvm/lib/libtvm_runtime.so": "lib", "tvm/lib/libtvm_runtime_cuda.so": "lib"},
    f"apache_tvm_ffi-{ffi_version}-": {"tvm_ffi/lib/libtvm_ffi.so": "lib"},
}
for prefix, files in wanted.items():
    (wheel,) = sorted(glob.glob(os.path.join(wheels, prefix + "*aarch64*.whl")))[-1:]
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename
            if name in files:
                target = os.path.join(staging, files[name], os.path.basename(name))
            elif prefix.startswith("apache_tvm_ffi") and name.startswith("tvm_ffi/include/") and not name.endswith("/"):
                target = os.path.join(staging, "include", name[len("tvm_ffi/include/"):])
            else:
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
missing = [n for files in wanted.values() for n in files if not os.path.exists(os.path.join(staging, files[n], os.path.basename(n)))]
if missing or not os.path.isdir(os.path.join(staging, "include", "tvm", "ffi")):
    sys.exit(f"setup_arm: the wheels lack {missing or 'tvm_ffi/include/tvm/ffi'}")
PY
    chmod 755 "$staging"
    touch "$staging/.tvm-$TVM_VERSION-ffi-$TVM_FFI_VERSION"
    rm -rf "$runtime"
    mkdir -p "$(dirname "$runtime")"
    mv "$staging" "$runtime"
    trap - EXIT
fi
echo "setup_arm: aarch64 toolchain, qemu and TVM runtime ready ($runtime)"
