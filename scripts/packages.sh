# Debian packages the project needs, and a function that installs the missing ones
# (apt-get update runs at most once per invocation). Sourced by test.sh and demo.sh.

BUILD_PACKAGES=(cmake ninja-build g++ pkg-config libgtest-dev libgmock-dev googletest
                libmsgsl-dev liburing-dev libgnutls28-dev libcli11-dev libfmt-dev)
TEST_PACKAGES=(qemu-utils libvhdi-dev libvhdi-utils genisoimage xorriso udftools libnbd-bin
               clang libclang-rt-14-dev)
WINDOWS_PACKAGES=(mingw-w64 g++-mingw-w64-x86-64-posix gcc-mingw-w64-x86-64-posix wine wine64
                  binutils-mingw-w64-x86-64
                  g++-mingw-w64-i686-posix gcc-mingw-w64-i686-posix binutils-mingw-w64-i686)

ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  echo "Installing: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}
