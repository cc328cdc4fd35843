# Command-line options of the scripts that take them (bundle.sh, install-bundle.sh), sourced.
# A script names each option once: "--name VARIABLE" takes a value, "--flag VARIABLE=value"
# sets the variable; anything else, or an option without its value, stops the script (exit 2)
# with the script's own message and the argument.
#
#   parse_options "unknown argument" "--out OUT" "--start START=1" -- "$@"
parse_options() {
  local _message=$1 _spec _option _target
  local -A _takes=() _sets=()
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    _spec=$1
    _option=${_spec%% *}
    _target=${_spec#* }
    case "$_target" in
      *=*) _sets[$_option]=$_target ;;
      *) _takes[$_option]=$_target ;;
    esac
    shift
  done
  shift
  while [ $# -gt 0 ]; do
    if [ -z "$1" ]; then
      break
    elif [ -n "${_takes[$1]:-}" ] && [ $# -ge 2 ]; then
      printf -v "${_takes[$1]}" '%s' "$2"
      shift 2
    elif [ -n "${_sets[$1]:-}" ]; then
      printf -v "${_sets[$1]%%=*}" '%s' "${_sets[$1]#*=}"
      shift
    else
      break
    fi
  done
  if [ $# -gt 0 ]; then
    echo "$_message: $1" >&2
    exit 2
  fi
}
