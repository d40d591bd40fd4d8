#!/bin/sh
# The PAM module in a real stack, run by pamtester under pam_wrapper (no root, no change to /etc).
#
#   run.sh MODULE MATCH_CONFIG OTHER_CONFIG USER
#
# MODULE is the built libpam_facekey.so; MATCH_CONFIG replays an enrolled face of USER, OTHER_CONFIG someone
# else's face. Both must allow the services used here in `[pam] services`: face-deny, face-deny-other,
# face-matrix, face-matrix-match, face-unix, face-permit (and a rate limit above the handful of failures below). The stacks are what pam-auth-update writes into common-auth: its profile says
# `[success=end default=ignore]`, and pam-auth-update replaces `end` with the jump to the end of the primary
# block (`success=2` here); libpam itself does not accept `end`.
#
# Shows: a match ends the stack with success and no password is asked; anything else (no match, remote host)
# leaves the decision to the next module (pam_matrix with a known password standing in for pam_unix, pam_unix
# itself, pam_deny, pam_permit). Also checks that the module writes nothing to stdout/stderr (only pamtester's
# own lines and the conversation appear) and that environment variables (tract's included) do not change its
# decision.
# Prints a transcript; exits 1 at the first wrong result.
set -eu

if [ $# -ne 4 ]; then
    echo "usage: $0 MODULE MATCH_CONFIG OTHER_CONFIG USER" >&2
    exit 2
fi
module=$1 match=$2 other=$3 user=$4

wrapper=${PAM_WRAPPER_LIB:-}
if [ -z "$wrapper" ]; then
    for candidate in /usr/lib/*/libpam_wrapper.so /usr/lib64/libpam_wrapper.so /usr/lib/libpam_wrapper.so; do
        if [ -f "$candidate" ]; then wrapper=$candidate; break; fi
    done
fi
if [ -z "$wrapper" ] || ! command -v pamtester >/dev/null; then
    echo "pamtester and libpam_wrapper are required (scripts/install-deps installs them)" >&2
    exit 2
fi
matrix=$(dirname "$wrapper")/pam_wrapper/pam_matrix.so
[ -f "$matrix" ] || { echo "$matrix not found" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
svc=$work/pam.d
mkdir "$svc"
# pam_wrapper warns when there is no `other`.
echo "auth required pam_deny.so" >"$svc/other"
# The password database of pam_matrix: user:password:service.
for s in face-matrix; do echo "$user:secret:$s"; done >"$work/passdb"

# service CONFIG FALLBACK...: facekey first, as pam-auth-update orders it, then the fallback lines.
stack() {
    name=$1 config=$2
    shift 2
    {
        echo "auth [success=2 default=ignore] $module config=$config"
        for line in "$@"; do echo "$line"; done
    } >"$svc/$name"
}
stack face-deny "$match" \
    "auth [success=1 default=ignore] pam_deny.so" \
    "auth requisite pam_deny.so" \
    "auth required pam_permit.so"
cp "$svc/face-deny" "$svc/face-deny-other"
sed -i "s|config=$match|config=$other|" "$svc/face-deny-other"
stack face-matrix "$other" \
    "auth [success=1 default=ignore] $matrix passdb=$work/passdb" \
    "auth requisite pam_deny.so" \
    "auth required pam_permit.so"
stack face-matrix-match "$match" \
    "auth [success=1 default=ignore] $matrix passdb=$work/passdb" \
    "auth requisite pam_deny.so" \
    "auth required pam_permit.so"
stack face-unix "$other" \
    "auth [success=1 default=ignore] pam_unix.so nodelay" \
    "auth requisite pam_deny.so" \
    "auth required pam_permit.so"
stack face-permit "$other" \
    "auth [success=1 default=ignore] pam_permit.so" \
    "auth requisite pam_deny.so" \
    "auth required pam_permit.so"

failures=0
# case NAME EXPECTED_EXIT STDIN SERVICE [pamtester options...]: run pamtester, compare its exit status.
case_() {
    name=$1 expected=$2 input=$3 service=$4
    shift 4
    printf '%s\n' "$input" | env LD_PRELOAD="$wrapper" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$svc" \
        ${EXTRA_ENV:-} pamtester "$@" "$service" "$user" authenticate >"$work/out" 2>"$work/err" && status=0 || status=$?
    echo "== $name: pamtester $* $service $user authenticate -> exit $status (expected $expected)"
    awk '{ print "   stdout: " $0 }' "$work/out"
    awk '{ print "   stderr: " $0 }' "$work/err"
    if [ "$status" -ne "$expected" ]; then
        echo "   WRONG RESULT"
        failures=$((failures + 1))
    fi
}
# expect FILE TEXT: the last case's output holds TEXT.
expect() {
    if ! grep -qF -- "$2" "$work/$1"; then
        echo "   MISSING in $1: $2"
        failures=$((failures + 1))
    fi
}
refuse() {
    if grep -qF -- "$2" "$work/$1"; then
        echo "   UNEXPECTED in $1: $2"
        failures=$((failures + 1))
    fi
}

# 1. Matching face: success, the stack ends there (pam_deny after it never runs), no password asked. The only
#    output is the conversation and pamtester's own line, all on stdout: the module prints nothing itself.
case_ "enrolled face, password modules never reached" 0 "" face-deny
expect out "Looking for face..."
expect out "Recognised as John Simm"
if [ "$(grep -cv -e '^Looking for face\.\.\.$' -e '^Recognised as John Simm$' \
        -e '^pamtester: successfully authenticated$' "$work/out")" != 0 ] || [ -s "$work/err" ]; then
    echo "   UNEXPECTED OUTPUT beyond the conversation and pamtester's own line"
    failures=$((failures + 1))
fi

# 2. Another face: PAM_AUTH_ERR is ignored, the next module decides: here pam_deny, so failure.
case_ "other face, next module pam_deny" 1 "" face-deny-other
expect err "Authentication failure"

# 3. Another face, then the password: right password -> success, wrong -> failure.
case_ "other face, right password (pam_matrix)" 0 "secret" face-matrix
expect out "Looking for face..."
case_ "other face, wrong password (pam_matrix)" 1 "guess" face-matrix

# 4. Matching face with a password module after it: the password is never asked (stdin would say "guess").
case_ "enrolled face, password module skipped" 0 "guess" face-matrix-match
refuse err "Password:"

# 5. pam_unix after the module: it asks for the password; a wrong one fails.
case_ "other face, wrong password (pam_unix)" 1 "not-the-password" face-unix

# 6. pam_permit after the module: the next module decides, success.
case_ "other face, next module pam_permit" 0 "" face-permit

# 7. Remote host (PAM_RHOST): the module does not apply even to the enrolled face; the password decides.
case_ "enrolled face from a remote host, right password" 0 "secret" face-matrix-match -I rhost=192.0.2.7
refuse out "Looking for face..."
case_ "enrolled face from a remote host, no fallback" 1 "" face-deny -I rhost=192.0.2.7

# 8. Environment variables change nothing: no SSH_CONNECTION trick, no SUDO_USER trick.
EXTRA_ENV="SSH_CONNECTION=192.0.2.7_50000_192.0.2.1_22 SSH_CLIENT=192.0.2.7 SUDO_USER=nobody" \
    case_ "enrolled face with SSH_CONNECTION and SUDO_USER set" 0 "" face-deny
expect out "Recognised as John Simm"

# 9. tract's variables in the caller's environment change nothing either: every knob of tract 0.23.9 set to a
#    hostile value (an instruction set of another architecture makes tract panic, AMX bf16 and the convolution
#    switches change the arithmetic, a forged CPU vendor changes the kernels): the same decisions, no crash.
tract_env="TRACT_CPU_ISA=+amx-bf16,+sve2,-avx512f TRACT_AMX_BF16=1 TRACT_X86_KIND=${HOSTILE_X86_KIND:-amd}
 TRACT_AVX512_FMA_UNITS=2 TRACT_LLC_BYTES=1K TRACT_LLC_CONTENDED=1 TRACT_MMM_CHUNK_SLACK_BYTES=1
 TRACT_MMM_CHUNKS_PER_THREAD=64 TRACT_DOTPROD_DISABLE=1 TRACT_SVE_DISABLE=1 TRACT_SME_DISABLE=1
 TRACT_CPU_AARCH64_KIND=a53 TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=0xd03 TRACT_CPU_ARM32_NEON=1
 TRACT_RISCV64_TLB_REFRESH_FMAS=1 TRACT_DISABLE_DIRECT_SPATIAL=1 TRACT_ENABLE_BLOCKED_CONV=1
 TRACT_DISABLE_BLOCKED_CONV=1 TRACT_LAZY_IM2COL_MIN_KERNEL=0 TRACT_LAZY_IM2COL_MAX_EAGER_BYTES=0
 TRACT_AVGPOOL_SEPARABLE=1 TRACT_DISABLE_DEPTHWISE_DECONV=1 TRACT_MAX_SEATS=1 TRACT_AUTOBATCH_LANES=8
 TRACT_TURN_LINGER_US=100000 TRACT_CONFIG=/nonexistent/tract.toml TRACT_FACEKEY__RUNTIME=cuda"
EXTRA_ENV=$tract_env case_ "enrolled face with hostile tract variables" 0 "" face-deny
expect out "Recognised as John Simm"
if [ -s "$work/err" ]; then
    echo "   UNEXPECTED OUTPUT on stderr"
    failures=$((failures + 1))
fi
EXTRA_ENV=$tract_env case_ "other face with hostile tract variables" 1 "" face-deny-other
expect err "Authentication failure"
refuse err "panicked"

# 10. The decision and its reason are logged (pam_syslog, captured by pam_wrapper at debug level 2).
PAM_WRAPPER_DEBUGLEVEL=2 case_ "decision logged" 0 "" face-deny
expect err "user=$user service=face-deny ruid=$(id -u) ruser=- tty=-: PAM_SUCCESS: matched"
PAM_WRAPPER_DEBUGLEVEL=2 case_ "remote refusal logged" 1 "" face-deny -I rhost=192.0.2.7
expect err "PAM_AUTHINFO_UNAVAIL: not applicable: remote host \"192.0.2.7\""

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all pamtester checks passed"
