# The front of every shim (sandman/shims.py renders it after the values it reads). POSIX sh:
# /bin/sh (dash on Debian) starts in a fraction of bash's time, and a warm call in a loop needs no
# more than these lines (docs/performance.md, "The fast path"). The rest of the shim is bash.
# The switches, read once here for the fast path and for the runtime's warm.bash (bash runs
# these lines too): warm mode (SANDMAN_WARM, else the shim's own SM_WARM) and the agent (on
# unless SANDMAN_AGENT says no).
case ${SANDMAN_WARM-} in
  '') sm_warm=${SM_WARM:-0} ;;
  0|no|false|off) sm_warm=0 ;;
  *) sm_warm=1 ;;
esac
case ${SANDMAN_AGENT-} in 0|no|false|off) sm_agent_on= ;; *) sm_agent_on=1 ;; esac
# Not bash, or bash as sh (POSIX mode): the fast path, else this file again in bash. A
# BASH_VERSION in the environment does not fool it: dash runs no `[[`. A warm call through the
# agent whose route an earlier call of this shim wrote down (warm.bash, sm_route_write) goes
# straight to the agent's client, which takes that route only when everything the runtime
# would look at is the same, and otherwise runs the shim again with SANDMAN_ROUTE_SKIP=1.
if [ -z "${BASH_VERSION-}" ] || ! eval '[[ ! -o posix ]]' 2>/dev/null; then
  if [ "$sm_warm" = 1 ] && [ -n "$sm_agent_on" ] \
      && [ -z "${SANDMAN_ROUTE_SKIP-}${SANDMAN_AGENT_SKIP-}${SANDMAN_DRY_RUN-}${SANDMAN_COMPLETE-}" ] \
      && [ -n "$SM_WARM_DIR" ] && [ -f "$SM_WARM_DIR/route-$SM_NAME" ] && [ -x "$SM_AGENT" ] \
      && { [ -z "$SM_CONFIG" ] || [ -n "${SANDMAN_NO_REFRESH-}" ] || ! [ "$SM_CONFIG" -nt "$0" ]; }; then
    exec "$SM_AGENT" route "$SM_WARM_DIR/route-$SM_NAME" "$0" "$@"
  fi
  exec /bin/bash "$0" "$@"
fi
