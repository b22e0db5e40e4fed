# firn's environment dump for `nix develop`: bash runs this as the builder of a copy of the
# derivation. It sets the environment up as the build would (the structured attributes, and
# stdenv's `setup` when there is a `stdenv`), then writes the shell's variables and functions,
# as JSON, to the first output (the others are left empty):
#   {"bashFunctions": {NAME: BODY}, "variables": {NAME: {"type": T, "value": V}}}
# with T "exported" or "var" (V a string), "array" (a list) or "associative" (an object).
set -e
if [ -e .attrs.sh ]; then source .attrs.sh; fi
export IN_NIX_SHELL=impure
export dontAddDisableDepTrack=1
if [[ -n $stdenv ]]; then
    source "$stdenv/setup"
fi
set +e

# A JSON string of $1: backslashes, quotes and control characters escaped.
__firnenv_string() {
    local s=$1 i c
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    for ((i = 1; i < 32; i++)); do
        printf -v c "\\x$(printf %02x "$i")"
        if [[ $s == *"$c"* ]]; then
            s=${s//"$c"/$(printf '\\u%04x' "$i")}
        fi
    done
    printf '"%s"' "$s"
}

# Whether a variable is bash's own state (or this script's), not part of the environment
# (the same set as CppNix's dump leaves out; read-only ones are left out below).
__firnenv_internal() {
    case $1 in
        BASH_* | BASHOPTS | BASHPID | FUNCNAME | GROUPS | PIPESTATUS | RANDOM | SRANDOM | \
            SECONDS | HISTCMD | DIRSTACK | OPTIND | OPTARG | SHLVL | HOSTNAME | PWD | _ | \
            __firnenv_*) return 0 ;;
    esac
    return 1
}

# The exported variables that have no value (`declare -x NAME`): an empty string.
__firnenv_unset_exports() {
    local line
    while IFS= read -r line; do
        if [[ $line =~ ^declare\ -[a-zA-Z]*x[a-zA-Z]*\ ([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
        fi
    done < <(declare -px)
}

__firnenv_dump() {
    local __firnenv_name __firnenv_flags __firnenv_decl __firnenv_first=1 __firnenv_body
    local __firnenv_key __firnenv_sep __firnenv_p
    local -a __firnenv_names
    printf '{"bashFunctions":{'
    while read -r _ _ __firnenv_name; do
        [[ $__firnenv_name == __firnenv_* ]] && continue
        __firnenv_body=$(declare -f "$__firnenv_name")
        # Without the `NAME () ` line, the `{` and the closing `}`.
        __firnenv_body=${__firnenv_body#*$'\n'}
        __firnenv_body=${__firnenv_body#\{}
        __firnenv_body=${__firnenv_body%\}}
        ((__firnenv_first)) || printf ','
        __firnenv_first=0
        __firnenv_string "$__firnenv_name"
        printf ':'
        __firnenv_string "$__firnenv_body"
    done < <(declare -F)
    printf '},"variables":{'
    __firnenv_first=1
    for __firnenv_p in {a..z} {A..Z} _; do
        eval "__firnenv_names=(\"\${!${__firnenv_p}@}\")"
        for __firnenv_name in "${__firnenv_names[@]}"; do
            __firnenv_internal "$__firnenv_name" && continue
            __firnenv_decl=$(declare -p "$__firnenv_name" 2>/dev/null) || continue
            __firnenv_flags=${__firnenv_decl#declare -}
            __firnenv_flags=${__firnenv_flags%% *}
            [[ $__firnenv_flags == *r* ]] && continue
            local -n __firnenv_ref=$__firnenv_name
            ((__firnenv_first)) || printf ','
            __firnenv_first=0
            __firnenv_string "$__firnenv_name"
            if [[ $__firnenv_flags == *A* ]]; then
                printf ':{"type":"associative","value":{'
                __firnenv_sep=
                for __firnenv_key in "${!__firnenv_ref[@]}"; do
                    printf '%s' "$__firnenv_sep"
                    __firnenv_sep=,
                    __firnenv_string "$__firnenv_key"
                    printf ':'
                    __firnenv_string "${__firnenv_ref[$__firnenv_key]}"
                done
                printf '}}'
            elif [[ $__firnenv_flags == *a* ]]; then
                printf ':{"type":"array","value":['
                __firnenv_sep=
                for __firnenv_key in "${__firnenv_ref[@]}"; do
                    printf '%s' "$__firnenv_sep"
                    __firnenv_sep=,
                    __firnenv_string "$__firnenv_key"
                done
                printf ']}'
            elif [[ $__firnenv_flags == *x* ]]; then
                printf ':{"type":"exported","value":'
                __firnenv_string "${__firnenv_ref-}"
                printf '}'
            else
                printf ':{"type":"var","value":'
                __firnenv_string "${__firnenv_ref-}"
                printf '}'
            fi
            unset -n __firnenv_ref
        done
    done
    while read -r __firnenv_name; do
        __firnenv_internal "$__firnenv_name" && continue
        ((__firnenv_first)) || printf ','
        __firnenv_first=0
        __firnenv_string "$__firnenv_name"
        printf ':{"type":"exported","value":""}'
    done < <(__firnenv_unset_exports)
    printf '}}'
}

# The outputs: a list of names, or (structured attributes) a map of names to paths.
if [[ $(declare -p outputs 2>/dev/null) == "declare -A"* ]]; then
    __firnenv_paths=("${outputs[@]}")
else
    __firnenv_paths=()
    for __firnenv_output in $outputs; do
        __firnenv_paths+=("${!__firnenv_output}")
    done
fi
__firnenv_dump > "${__firnenv_paths[0]}"
for __firnenv_path in "${__firnenv_paths[@]:1}"; do
    : > "$__firnenv_path"
done
