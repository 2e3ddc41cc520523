# Helpers shared by the project's bash scripts; source it (it only defines functions).

# die MESSAGE...: print "error: MESSAGE" to stderr and exit 1.
die() { echo "error: $*" >&2; exit 1; }

# env_only_args USAGE_FUNCTION "$@": -h/--help prints the usage and exits 0; any other argument is an
# error, because these scripts take their settings from environment variables.
env_only_args() {
    local usage_fn=$1; shift
    case "${1:-}" in
        -h|--help) "$usage_fn"; exit 0 ;;
        "") ;;
        *) "$usage_fn" >&2; die "unexpected argument '$1' (settings are environment variables)" ;;
    esac
}

# require_python: $PYTHON must be an executable path or a command on PATH.
require_python() {
    [ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null || die "PYTHON=$PYTHON is not an executable"
}
