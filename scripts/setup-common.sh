# Sourced by scripts/demo.sh and scripts/test.sh: installs what is missing, as root or through sudo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# require_node VERSION WHO: exits unless node is VERSION (major[.minor]) or later.
require_node() {
  local want=$1 who=$2
  if ! command -v node >/dev/null || ! node -e '
    const [w, h] = [process.argv[1], process.versions.node].map((v) => v.split(".").map(Number));
    process.exit(h[0] > w[0] || (h[0] === w[0] && h[1] >= (w[1] ?? 0)) ? 0 : 1);' "$want"; then
    echo "$who needs Node.js $want or later (node --version: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
  fi
}

# apt_install PACKAGE...: installs those not yet installed, updating the lists once.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# unpack PACKAGE FILE DIR: unpacks PACKAGE's .deb into DIR unless DIR/FILE is there.
unpack() {
  local package=$1 file=$2 dir=$3
  [ -e "$dir/$file" ] && return 0
  mkdir -p "$dir"
  local deb
  deb=$(mktemp -d)
  (cd "$deb" && { apt-get download "$package" 2>/dev/null || { as_root apt-get update -qq && apt-get download "$package" 2>/dev/null; }; })
  dpkg-deb -x "$deb"/*.deb "$dir"
  rm -rf "$deb"
}

# node_binary VERSION: Node.js VERSION's own binary in .cache/node/VERSION/bin/node, from the npm
# registry's node-linux-ARCH package (what the `node` package installs), unless it is there.
node_binary() {
  local version=$1 dir=.cache/node/$1 arch
  [ -x "$dir/bin/node" ] && return 0
  case $(dpkg --print-architecture) in
    amd64) arch=x64 ;;
    arm64) arch=arm64 ;;
    *) echo "node_binary: no node-linux package for $(dpkg --print-architecture)" >&2; return 1 ;;
  esac
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-$arch@$version" >/dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
  rm -rf "$tmp"
}

# The node modules and the compiled program, rebuilt when the lock file or sources changed.
build() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  npm run --silent build
}
