# Sourced by the serve tests that run npm packages (e2e/run.sh,
# conformance/run.sh): the tools check and the install into a scratch
# directory, each a skip (exit 77) where the machine cannot run them.

# require_tools TOOL...: exits 77 unless every TOOL is on the PATH.
require_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "SKIP: $tool is not installed"
      exit 77
    fi
  done
}

# npm_install DIR WHAT: `npm install` in DIR (which holds a package.json);
# on failure prints npm's log and exits 77, naming WHAT.
npm_install() {
  if ! (cd "$1" && npm install --no-audit --no-fund --loglevel=error >"$1/npm.log" 2>&1); then
    cat "$1/npm.log"
    echo "SKIP: npm install of $2 failed (no registry access?)"
    exit 77
  fi
}
