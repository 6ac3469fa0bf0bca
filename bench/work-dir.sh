# Sourced by ab.sh and callgrind.sh. The peers' kefu/run.sh writes its configuration, rules and
# database into a fresh `mktemp -d` directory and leaves it there; a run of a few seconds leaves
# hundreds of MiB, and a day of A/B runs filled this machine's disk (which then slowed and failed
# the runs). These find that directory from the running kefu and remove it after the run.

# work_dir PID: the directory holding the kefu.yaml that process PID was started with.
work_dir() {
  local config
  config=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -m1 '/kefu\.yaml$')
  [ -n "$config" ] && dirname "$config"
}

# remove_work_dir DIR: removes DIR if it is a mktemp directory of kefu/run.sh.
remove_work_dir() {
  case "$1" in
    "${TMPDIR:-/tmp}"/tmp.*) [ -f "$1/kefu.yaml" ] && rm -rf -- "$1" ;;
  esac
}
