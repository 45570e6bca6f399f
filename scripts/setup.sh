# Comfy Relay's set-up steps, sourced by scripts/start and scripts/test.
# Every step checks first and installs only what is missing, so a second run takes seconds.
# Only crates.io, npm and Debian packages are used.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
TERSER_VERSION=5.51.4
# Tools that are not Rust crates live outside the clone, so every clone shares them.
TOOLS_DIR=${COMFY_RELAY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/comfy-relay/tools}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$TOOLS_DIR/node_modules/.bin:$PATH"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

APT_UPDATED=
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  step "apt: installing ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_wasm_target() {
  # rust-toolchain.toml pins the channel; make sure it and its wasm32 target are there.
  (cd "$ROOT" && rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install)
  if ! (cd "$ROOT" && rustup target list --installed | grep -qx wasm32-unknown-unknown); then
    step "rustup: adding wasm32-unknown-unknown"
    (cd "$ROOT" && rustup target add wasm32-unknown-unknown)
  fi
}

ensure_trunk() {
  if [ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
    step "cargo: installing trunk $TRUNK_VERSION (takes a few minutes once)"
    cargo install trunk --version "$TRUNK_VERSION" --locked
  fi
}

ensure_wasm_bindgen() {
  # The CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
  local version
  version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
    step "cargo: installing wasm-bindgen-cli $version (takes a few minutes once)"
    cargo install wasm-bindgen-cli --version "=$version"
  fi
}

ensure_wasm_opt() {
  # Debian's binaryen (108) emits modules that fail in the browser; npm's binaryen works.
  if ! wasm-opt --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
    command -v npm >/dev/null || apt_install nodejs npm
    step "npm: installing binaryen@$BINARYEN_VERSION into $TOOLS_DIR"
    mkdir -p "$TOOLS_DIR"
    npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION"
  fi
}

ensure_js_minifier() {
  # Trunk's own minifier fails on wasm-bindgen's glue (`export default`) and leaves it as is.
  if [ "$(terser --version 2>/dev/null)" != "terser $TERSER_VERSION" ]; then
    command -v npm >/dev/null || apt_install nodejs npm
    step "npm: installing terser@$TERSER_VERSION into $TOOLS_DIR"
    mkdir -p "$TOOLS_DIR"
    npm install --prefix "$TOOLS_DIR" --no-audit --no-fund --silent "terser@$TERSER_VERSION"
  fi
}

ensure_build_tools() {
  apt_install brotli gzip openssl
  ensure_wasm_target
  ensure_trunk
  ensure_wasm_bindgen
  ensure_wasm_opt
  ensure_js_minifier
}

ensure_browser() {
  apt_install chromium chromium-driver
}

# Builds the web app into dist/ in release mode, with brotli and gzip copies of every asset
# so the relay serves them precompressed.
#
# The wasm is built with two size flags of the pinned compiler that stable Rust keeps behind
# RUSTC_BOOTSTRAP (measured 4.2 KB less brotli): no file and line in panic messages (the app
# aborts on a panic anyway) and no `Debug` formatting (the app shows no `{:?}` text; tests are
# native builds and keep both). Cargo adds them to .cargo/config.toml's wasm flags. Then the
# JavaScript glue is minified (1.8 KB less) and its integrity hash in index.html follows.
build_app() {
  step "trunk: building the web app (release)"
  (cd "$ROOT" && RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Zlocation-detail=none -Zfmt-debug=none" \
    trunk build --release --offline --minify)
  local script integrity
  for script in "$ROOT"/dist/*.js; do
    if [ "$(basename "$script")" = sw.js ]; then
      # The service worker: a classic script, loaded by name (no hash, no integrity).
      terser "$script" --compress --mangle --output "$script.min"
    else
      terser "$script" --module --compress --mangle --output "$script.min"
      integrity="sha384-$(openssl dgst -sha384 -binary "$script.min" | openssl base64 -A)"
      sed -i "s|href=/$(basename "$script") integrity=sha384-[A-Za-z0-9+/=]*|href=/$(basename "$script") integrity=$integrity|" "$ROOT/dist/index.html"
      grep -q "integrity=$integrity" "$ROOT/dist/index.html" || { echo "no integrity for $script in dist/index.html" >&2; return 1; }
    fi
    mv "$script.min" "$script"
  done
  find "$ROOT/dist" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.svg' -o -name '*.webmanifest' \) \
    -exec brotli --force --best --keep {} + \
    -exec gzip --force --best --keep {} +
}
