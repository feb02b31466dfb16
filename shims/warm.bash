# Included into the shim runtime by sandman (shims/shim.bash, @@WARM@@): the reaper and warm mode.
# The reaper and the warm containers belong to one SANDMAN_HOME *and* one daemon: the daemon this
# call talks to ($DOCKER_HOST, or the default socket) keys their files.
# -- the daemon key (its one copy: sandman/warm.py daemon_key runs this block). The default
# daemon's files keep the plain names (state/reaper.pid, state/warm/); another one's get
# "@<DOCKER_HOST with % and / escaped>" --
sm_dhost=${DOCKER_HOST:-$SM_DAEMON_DEFAULT}
[[ $sm_engine == podman ]] && sm_dhost=unix://$sm_sock  # Podman's: this user's API socket
sm_dkey=
if [[ $sm_dhost != "$SM_DAEMON_DEFAULT" ]]; then
  sm_dkey=${sm_dhost//"%"/%25}; sm_dkey=@${sm_dkey//\//%2F}
fi
# -- end of the daemon key --

# A SIGKILLed shim cannot clean up after itself: a per-user reaper removes containers whose
# shim is gone. Start it if it is not running: a pidfile read and a /proc read, no fork when it
# is. Its command line names its pidfile and daemon, so a recycled pid, another home's or
# daemon's reaper, or garbage in the file does not count.
# Another user running this home's shims cannot use its private state: their reaper keeps its
# pidfile in their own temp folder (as their passwd files do), so their orphans are reaped too.
sm_rpf=
if [[ -n $SM_REAPER_PIDFILE ]]; then
  sm_rpf=${SM_REAPER_PIDFILE%.pid}$sm_dkey.pid
  if [[ ! -O ${SM_REAPER_PIDFILE%/*} ]]; then
    sm_rtmp=${TMPDIR:-/tmp}/sandman-$sm_uid
    [[ -d $sm_rtmp ]] || mkdir -m 700 "$sm_rtmp" 2>/dev/null
    if [[ -d $sm_rtmp && -O $sm_rtmp && ! -L $sm_rtmp ]]; then
      sm_rpf=$sm_rtmp/reaper-${sm_rpf//[!A-Za-z0-9._-]/_}
    else
      sm_rpf=
    fi
  fi
fi
if [[ -n $sm_rpf ]]; then
  sm_rpid= sm_alive= sm_cl=()
  { read -r sm_rpid <"$sm_rpf"; } 2>/dev/null
  if [[ -n $sm_rpid && $sm_rpid != *[!0-9]* ]]; then
    { mapfile -d '' sm_cl <"/proc/$sm_rpid/cmdline"; } 2>/dev/null
    [[ " ${sm_cl[*]} " == *" sandman.reaper $sm_rpf $sm_dhost "* ]] && sm_alive=1
  fi
  [[ -n $sm_alive ]] || (cd / || exit; SANDMAN_ENGINE=$sm_engine setsid "${SM_REAPER[@]}" "$sm_rpf" "$sm_dhost" </dev/null >/dev/null 2>&1 &)
fi

# Warm mode (docs/performance.md): `docker exec` into a long-lived container of this tool@version
# that has exactly the mounts, user and network this call's cold container would get. Any
# doubt (an option it does not know, no /bin/sh in the image, a start that fails) means a cold run.
#
# The exit status of a warm call is trusted only when its tool is known to have started: the
# wrapper run by `docker exec` writes the tool's pid into the call's file before it execs the
# tool; with no pid there, whatever docker said is dropped and the call runs again (a new warm
# container, or cold). Stopping a container (sandman/warm.py: retire) first moves its folder
# aside, then waits for the calls registered in it: a call registers (creates its call file in
# the folder), then checks that the folder still holds the container it found (its `id`), so
# either the stop sees the call and waits for it, or the call sees the stop and goes elsewhere.
# sm_warm and sm_agent_on: the switches, read by the shim's front (shims/front.sh).
sm_wdir=$SM_WARM_DIR${sm_dkey:+/$sm_dkey}
if [[ $sm_warm == 1 && -n ${SM_WARM_DIR-} && -d $SM_WARM_DIR && -O $SM_WARM_DIR ]] \
   && [[ $sm_engine == podman || -z ${DOCKER_HOST-} || $DOCKER_HOST == unix://* ]] \
   && { [[ -d $sm_wdir ]] || mkdir -m 700 "$sm_wdir" 2>/dev/null; } && [[ -O $sm_wdir ]]; then
  sm_warm_split() {  # sm_args -> sm_cargs (what the container is made of) + sm_xargs (per call)
    local i=0 n=${#sm_args[@]} a v
    sm_cargs=() sm_xargs=()
    while (( i < n )); do
      a=${sm_args[i]} v=${sm_args[i+1]-}
      case $a in
        --rm|-i|--init) (( i += 1 )); continue ;;
        --read-only) sm_cargs+=("$a"); (( i += 1 )); continue ;;
        -t) sm_xargs+=(-t); (( i += 1 )); continue ;;
        --name|--label|--log-driver|--pull|--entrypoint) ;;
        --user) sm_cargs+=(--user "$v") sm_xargs+=(-u "$v") ;;
        --workdir) sm_xargs+=(-w "$v") ;;
        -e) sm_xargs+=(-e "$v") ;;
        --mount|--group-add|--network|--security-opt|--cap-drop|--cap-add|--tmpfs|--ulimit|--device|--platform|--userns) sm_cargs+=("$a" "$v") ;;
        *) return 1 ;;
      esac
      (( i += 2 ))
    done
  }
  # A warm container's folder is named from its key; the container is named after the folder
  # and the folder's `id` (random, made with the folder): a folder deleted or replaced under a
  # running container never meets that container again (the reaper removes it as an orphan).
  sm_warm_find() {  # sm_wd/sm_wid/sm_wname: the running warm container made of sm_key, if any
    local d k p cl
    for d in "$sm_wdir/sandman-warm-$sm_uid-$SM_NAME-"*; do
      k=
      IFS= read -r -d '' k 2>/dev/null <"$d/key"
      [[ $k == "$sm_key" ]] || continue
      sm_wd=$d sm_wid= p=
      read -r sm_wid 2>/dev/null <"$d/id"
      [[ -n $sm_wid ]] || return 1
      sm_wname=${d##*/}-$sm_wid
      read -r p 2>/dev/null <"$d/pid"
      [[ -n $p ]] && { mapfile -d '' cl <"/proc/$p/cmdline"; } 2>/dev/null && [[ " ${cl[*]} " == *" $sm_wname "* ]] || return 1
      sm_wpid=$p
      # Started before the agent existed (its main is the shell loop, and no `noagent` mark
      # says the agent could not run there): retired like a swapped folder below, so this
      # call starts one whose main is the agent. Builtins only: the cmdline read above.
      # Its agent an older build than this one (sandman was upgraded: the binary is named by
      # its source's hash): retired the same way, its calls would miss what the new one does.
      sm_wagent=
      [[ " ${cl[*]} " == *" /run/sandman-agent/agent serve "* ]] && sm_wagent=1
      if [[ -n $sm_agent && -z $sm_wagent && ! -e $d/noagent ]]; then
        :
      elif [[ -n $sm_agent && -n $sm_wagent && -d /proc/$p/root/ && ! /proc/$p/root/run/sandman-agent/agent -ef $sm_agent ]]; then
        :
      elif sm_warm_same "$p"; then
        return 0
      fi
      # Another folder than this call resolved (deleted and made again at the same path, or
      # swapped): the container is retired as `warm stop` does it (its folder moves to
      # .retired/NAME; the reaper removes it once its calls ended) and this call gets a new one.
      { [[ -d $sm_wdir/$SM_WARM_RETIRED ]] || mkdir -m 700 "$sm_wdir/$SM_WARM_RETIRED"; } 2>/dev/null
      mv -T -- "$d" "$sm_wdir/$SM_WARM_RETIRED/$sm_wname" 2>/dev/null
      return 1
    done
    return 1
  }
  sm_warm_same() {  # does the kept container (its init is pid $1) mount what this call resolved?
    # Compared with what this call pinned (sm_real's fds: the objects checked, not their
    # names, which can be swapped since); builtins only, this runs on every warm call.
    local i r=/proc/$1/root
    [[ -d $r/ ]] || return 0  # its root is not ours to look at: the key alone decides
    for i in "${!sm_srcs[@]}"; do
      [[ $r${sm_dsts[i]} -ef ${sm_pins[i]:-${sm_srcs[i]}} ]] || return 1
      [[ ${sm_pins[i]} == /dev/fd/*/. || ! -L ${sm_pins[i]} ]] || return 1
    done
  }
  sm_warm_pinned() {  # is the container just started (init pid $1) made of what was checked?
    # Its mounts were made from paths, like a cold call's: one stat (this path forks anyway)
    # compares each mount point in its root with the pinned object. Fails closed: a root we
    # cannot look at, or anything else, is not the same.
    local i r=/proc/$1/root out a=() b=() l
    out=$(PATH=/usr/bin:/bin exec stat -c '%d %i %F' -- "${sm_pins[@]}" "${sm_dsts[@]/#/$r}" 2>/dev/null) || return 1
    mapfile -t a <<<"$out"
    (( ${#a[@]} == 2 * ${#sm_pins[@]} )) || return 1
    for i in "${!sm_pins[@]}"; do
      l=${a[i]}
      [[ $l != *" symbolic link" && ${l%% [a-z]*} == "${a[i + ${#sm_pins[@]}]%% [a-z]*}" ]] || return 1
    done
  }
  sm_warm_prepare() {  # the folder for sm_key with its FIFOs and id: sm_wd, sm_wid, sm_wname
    local h p
    read -r h _ < <(printf '%s\n%s' "$sm_wdir" "$sm_key" | sha256sum)
    sm_wd=$sm_wdir/sandman-warm-$sm_uid-$SM_NAME-${h:0:12}
    [[ -d $sm_wd/calls && -d $sm_wd/sock ]] || mkdir -p -m 700 "$sm_wd" "$sm_wd/calls" "$sm_wd/sock" 2>/dev/null || return 1
    for p in signals nap; do
      [[ -p $sm_wd/$p ]] || mkfifo -m 600 "$sm_wd/$p" 2>/dev/null || [[ -p $sm_wd/$p ]] || return 1
    done
    [[ -n $sm_napfd ]] || { exec {sm_napfd}<>"$sm_wd/nap"; } 2>/dev/null || return 1
    sm_wid=
    read -r sm_wid 2>/dev/null <"$sm_wd/id"
    if [[ -z $sm_wid ]]; then  # the first starter's id wins (ln does not replace)
      printf '%04x%04x%04x\n' "$RANDOM" "$RANDOM" "$RANDOM" >"$sm_wd/id.$$" 2>/dev/null &&
        ln "$sm_wd/id.$$" "$sm_wd/id" 2>/dev/null
      rm -f "$sm_wd/id.$$" 2>/dev/null
      read -r sm_wid 2>/dev/null <"$sm_wd/id"
      [[ -n $sm_wid ]] || return 1
    fi
    sm_wname=${sm_wd##*/}-$sm_wid
    { printf '%s\n' "${sm_wmounts[@]}" >"$sm_wd/mounts.$$" && mv -f "$sm_wd/mounts.$$" "$sm_wd/mounts" &&
      printf '%s' "$sm_key" >"$sm_wd/key.$$" && mv -f "$sm_wd/key.$$" "$sm_wd/key"; } 2>/dev/null
  }
  sm_warm_moved() {  # was sm_wd stopped (moved aside or replaced) since sm_wid was read?
    local id=
    read -r id 2>/dev/null <"$sm_wd/id"
    [[ $id != "$sm_wid" ]]
  }
  sm_warm_start() {  # start the warm container for sm_key, or join the one being started
    local out p i main rc pf
    if [[ -n $sm_agent ]]; then  # the agent is a binary for one platform: the image's?
      p=${SM_IMAGE_PLATFORM-}  # read at install; a shim from before asks the engine
      [[ -n $p ]] || p=$("$SM_DOCKER" image inspect -f '{{.Os}}/{{.Architecture}}' "$SM_IMAGE" 2>/dev/null)
      [[ $p == "$SM_AGENT_PLATFORM" ]] || sm_agent=
    fi
    # It runs on the host: only the binary whose sha256 its build recorded (sandman/agent.py).
    # Checked here, where a container starts, not per call: a call execs the agent only
    # through a container whose start passed this check (its socket), from a folder only its
    # owner writes.
    if [[ -n $sm_agent ]]; then
      local want= got=
      { read -r want <"$sm_agent.sha256"; } 2>/dev/null
      read -r got _ < <(sha256sum -- "$sm_agent" 2>/dev/null)
      [[ -n $want && $got == "$want" ]] || sm_agent=
    fi
    sm_wmounts=()
    for (( i = 0; i < ${#sm_cargs[@]}; i++ )); do
      [[ ${sm_cargs[i]} == --mount ]] && sm_wmounts+=("${sm_cargs[++i]}")
    done
    for (( i = 0; i < 50; i++ )); do
      sm_warm_prepare || return 1
      # Its main process: the agent (serving calls on sock/, and the signal FIFO), or a
      # shell loop reading the signal FIFO when there is no agent for it.
      if [[ -n $sm_agent ]]; then
        main=(--mount "type=bind,\"source=${sm_agent//\"/\"\"}\",target=/run/sandman-agent/agent,readonly"
              --mount "type=bind,\"source=${sm_wd//\"/\"\"}/sock\",target=/run/sandman-warm/sock"
              --workdir / --entrypoint /run/sandman-agent/agent "$SM_IMAGE"
              serve /run/sandman-warm/sock/agent.sock /run/sandman-warm/signals "$sm_wname")
      else
        rm -f -- "$sm_wd/sock/agent.sock" 2>/dev/null  # an earlier container's: calls must not take it
        # the agent is there but cannot serve this image (platform, checksum, failed start):
        # the mark keeps sm_warm_find from retiring this container for want of the agent
        if [[ -x ${SM_AGENT-} ]]; then : 2>/dev/null >"$sm_wd/noagent"; else rm -f -- "$sm_wd/noagent" 2>/dev/null; fi
        main=(--workdir / --entrypoint /bin/sh "$SM_IMAGE"
              -c 'exec 3<>/run/sandman-warm/signals; while read -r s p <&3; do kill -s "$s" "$p" 2>/dev/null; done'
              "$sm_wname")
      fi
      pf=()  # Podman writes the container's pid as it starts it: no inspect after (SM_RUN_PIDFILE)
      [[ -n ${SM_RUN_PIDFILE-} ]] && pf=(--pidfile "$sm_wd/pidfile.$$")
      out=$("$SM_DOCKER" run -d --rm --init --name "$sm_wname" --log-driver none --pull never "${pf[@]}" \
        --label "$SM_LABEL_ROLE=warm" --label "$SM_LABEL_TOOL=$SM_TOOL" --label "$SM_LABEL_VERSION=$SM_VERSION" \
        --label "$SM_LABEL_UID=$sm_uid" --label "$SM_LABEL_HOST=$SM_HOST" --label "$SM_LABEL_HOME=$sm_wdir" \
        --label "$SM_LABEL_IDLE=${SANDMAN_WARM_IDLE_SECONDS:-$SM_WARM_IDLE}" \
        "${sm_cargs[@]}" --mount "type=bind,\"source=${sm_wd//\"/\"\"}/calls\",target=/run/sandman-warm/calls" \
        --mount "type=bind,\"source=${sm_wd//\"/\"\"}/signals\",target=/run/sandman-warm/signals" \
        "${main[@]}" 2>&1 >/dev/null)
      rc=$? p=
      if [[ -n ${pf[*]} ]]; then
        [[ $rc == 0 ]] && read -r p 2>/dev/null <"$sm_wd/pidfile.$$"
        rm -f -- "$sm_wd/pidfile.$$" 2>/dev/null
        [[ $p =~ ^[1-9][0-9]*$ && -d /proc/$p ]] || p=
      fi
      if [[ $rc == 0 || $out == *"already in use"* ]]; then
        [[ -n $p ]] || p=$("$SM_DOCKER" inspect -f '{{if .State.Running}}{{.State.Pid}}{{end}}' "$sm_wname" 2>/dev/null)
        if [[ -n $p && $p != 0 ]] && (( ${#sm_pins[@]} )) && ! sm_warm_pinned "$p"; then
          # a mount is not what this call checked (swapped between the check and the start):
          # the container is retired and removed, and the call runs cold, checked again there
          { [[ -d $sm_wdir/$SM_WARM_RETIRED ]] || mkdir -m 700 "$sm_wdir/$SM_WARM_RETIRED"; } 2>/dev/null
          mv -T -- "$sm_wd" "$sm_wdir/$SM_WARM_RETIRED/$sm_wname" 2>/dev/null
          ("$SM_DOCKER" rm -f "$sm_wname" </dev/null >/dev/null 2>&1 &)
          return 1
        fi
        if [[ -n $p && $p != 0 ]]; then
          { printf '%s\n' "$p" >"$sm_wd/pid.$$" && mv -f "$sm_wd/pid.$$" "$sm_wd/pid"; } 2>/dev/null
          sm_wpid=$p
          sm_wagent=${sm_agent:+1}
          # the agent listens a moment after its start: wait for it (up to 2 s) rather than
          # sending this first call down the slower path
          for (( i = 0; i < 200; i++ )); do
            [[ -z $sm_agent || -S $sm_wd/sock/agent.sock ]] && break
            read -r -t 0.01 -u "$sm_napfd" _
          done
          return 0
        fi
        [[ -n $sm_agent ]] && sm_agent= && continue  # the agent could not run there
      elif [[ $out != *"is already in progress"* && $out != *"is not running"* ]] && ! sm_warm_moved; then
        printf 'sandman: warning: %s@%s: no warm container, running cold: %s\n' "$SM_TOOL" "$SM_VERSION" "${out%%$'\n'*}" >&2
        return 1
      fi  # else: being removed, or stopped under us while it started: again
      read -r -t 0.1 -u "$sm_napfd" _
    done
    return 1
  }
  sm_warm_deliver() {  # pass pending signals to the tool through the container's signal loop
    local s p= n=0
    while :; do
      read -r -n 32 p 2>/dev/null <"/proc/self/fd/$sm_cfd"  # the tool can write there: bounded
      [[ $p == [0-9]* ]] && break
      if (( n++ > 150 )) || ! kill -0 "$sm_cp" 2>/dev/null; then sm_pending=(); return; fi
      read -r -t 0.02 -u "$sm_napfd" _
    done
    for s in "${sm_pending[@]}"; do printf '%s %s\n' "$s" "$p" 1<>"$sm_wd/signals"; done
    sm_pending=()
  }
  sm_warm_exec() {  # run the call; sm_rc is its status. False when the tool never started.
    local p= tok u= f nc=+C
    read -r p 2>/dev/null </proc/$$/stat
    p=${p##*) }; read -r -a p <<<"$p"
    read -r u 2>/dev/null </proc/sys/kernel/random/uuid
    tok=$$-${p[19]}-${u//-/}
    [[ -n $sm_napfd ]] || { exec {sm_napfd}<>"$sm_wd/nap"; } 2>/dev/null || return 1
    # Register, then check the folder still holds the container found: the call file is kept
    # open, so its fd follows it when a stop moves the folder aside.
    # `calls/` is writable from inside the container: a name planted there (a link to a file
    # of the user's, a FIFO) must never be opened. The name ends in 128 random bits the tool
    # cannot know beforehand, and the file is made with noclobber: O_EXCL when the name does
    # not exist (never through a link); anything else there is refused, and an fd that is not
    # a regular file (a name planted between the check and the open) is dropped unused.
    [[ -n $sm_cfd ]] && exec {sm_cfd}>&-
    f=$sm_wd/calls/$tok sm_cfd=
    [[ -n $u && ! -e $f && ! -L $f ]] || return 1
    [[ $- == *C* ]] && nc=-C
    set -C
    { exec {sm_cfd}>"$f"; } 2>/dev/null
    set $nc
    [[ -n $sm_cfd ]] || return 1
    if [[ ! -f /proc/self/fd/$sm_cfd || -L $f ]]; then exec {sm_cfd}>&-; sm_cfd=; return 1; fi
    if sm_warm_moved; then
      printf 'done\n' >"/proc/self/fd/$sm_cfd"
      return 1
    fi
    : 2>/dev/null >"$sm_wd/used"
    # The agent's client takes the call from here (no docker client at all); it marks the
    # call done, and when the agent turns out not to be there it runs this shim again with
    # SANDMAN_AGENT_SKIP=1 (nothing has run yet): the `docker exec` path below, or cold.
    if [[ -n $sm_agent && -n $sm_agent_call && -S $sm_wd/sock/agent.sock ]]; then
      sm_route_write
      exec "$sm_agent" call "$sm_wd/sock/agent.sock" "$sm_cfd" "$SM_SELF" "${#SM_PREFIX[@]}" \
        "${sm_xargs[@]}" -- "${SM_PREFIX[@]}" "$@" {sm_napfd}<&-
    fi
    sm_pending=()
    trap '' TERM HUP
    # In a container that runs the agent, the call goes through its `reap`: the subreaper that
    # ends whatever the tool leaves behind when it returns (promise 14), as the agent's calls do.
    local reap=()
    [[ -n $sm_wagent ]] && reap=(/run/sandman-agent/agent reap --)
    "$SM_DOCKER" exec -i "${sm_xargs[@]}" "$sm_wname" /bin/sh -c '{ echo "$$" >"$0"; } 2>/dev/null || exit 125; exec "$@"' \
      "/run/sandman-warm/calls/$tok" "${reap[@]}" "${SM_PREFIX[@]}" "$@" 0<&0 {sm_napfd}<&- {sm_cfd}<&- &
    sm_cp=$!
    trap 'sm_pending+=(INT)' INT; trap 'sm_pending+=(TERM)' TERM; trap 'sm_pending+=(HUP)' HUP
    while :; do
      wait "$sm_cp"; sm_rc=$?
      (( ${#sm_pending[@]} )) || break
      sm_warm_deliver
    done
    trap - INT TERM HUP
    p=
    read -r -n 32 p 2>/dev/null <"/proc/self/fd/$sm_cfd"
    # Killed by a signal: the client may have died (SIGPIPE under `| head`) with the tool still
    # running; its pid stays in the call file, so the reaper kills it once this shim is gone.
    (( sm_rc > 128 )) || printf 'done\n' >"/proc/self/fd/$sm_cfd"
    [[ $p == [0-9]* ]]
  }
  # The route of this call, written down for the fast path (shim.bash; agent.c `route`): what
  # it depended on (who calls, the cwd, a terminal or not, every variable this runtime reads)
  # and where it went (the container, the client's options). Only for a call whose one mount
  # is its cwd, the arguments' paths all inside it, in the environment as it came: the client
  # checks each of these again on every call it routes, and the runtime decides the rest.
  sm_route_env=(HOME XDG_RUNTIME_DIR DOCKER_HOST CONTAINER_HOST TMPDIR USER LOGNAME TERM COLUMNS
    LINES LANGUAGE TZ LANG LC_ALL LC_CTYPE LC_MESSAGES LC_COLLATE LC_NUMERIC LC_TIME LC_MONETARY
    SANDMAN_ALLOW_ROOT SANDMAN_ALLOW_HOME SANDMAN_ALLOW_SHARED SANDMAN_WARM_IDLE_SECONDS
    SANDMAN_AGENT)
  sm_route_write() {
    local m=$SM_WARM_DIR/route-$SM_NAME v w=() old=() a b
    [[ -n $sm_wpid && -n $sm_umask && $SM_NEEDCMD != 1 && -z $sm_complete && -z $SM_ENV_FILE ]] || return 0
    [[ ${#sm_srcs[@]} == 1 && ${sm_srcs[0]} == "$sm_cwd" && ${#sm_tmpfs_dsts[@]} == 0 ]] || return 0
    [[ -z $sm_rootless || -n $sm_xdg0 ]] || return 0
    (( ${#SM_MOUNTS[@]} + ${#SM_EXTRA_MOUNTS[@]} + ${#SM_HOME_FILES[@]} + ${#SM_PATH_ENV[@]} + ${#SM_DEVICES[@]} )) && return 0
    local t=0
    [[ -t 0 && -t 1 ]] && t=1
    w=(sandman-route-2 "$sm_uid" "$sm_gid" "$sm_graw" "$sm_cwd" "$t" "$SM_PATH_ARGS" "$sm_wd" "$sm_wid"
       "$sm_wname" "$sm_wpid" "$sm_agent" "$sm_rpf" "$sm_dhost" $(( ${#sm_route_env[@]} + ${#SM_PASS_ENV[@]} + ${#SM_PROXY_ENV[@]} )))
    for v in "${sm_route_env[@]}" "${SM_PASS_ENV[@]}" "${SM_PROXY_ENV[@]}"; do
      # exported or not: bash gives TERM a value of its own ("dumb", not exported) when the
      # environment has none, and the client compares the environment (getenv)
      if [[ ${!v@a} == *x* ]]; then w+=("$v" "=${!v}"); else w+=("$v" -); fi
    done
    w+=("${#sm_xargs[@]}" "${sm_xargs[@]}" "${#SM_PREFIX[@]}" "${SM_PREFIX[@]}" end)
    { mapfile -d '' old <"$m"; } 2>/dev/null
    printf -v a '%s\x1f' "${w[@]}"; printf -v b '%s\x1f' "${old[@]}"
    [[ ${#old[@]} == "${#w[@]}" && $a == "$b" ]] && return 0  # as it is: nothing to write
    umask 077
    { printf '%s\0' "${w[@]}" >"$m"; } 2>/dev/null
    umask "$sm_umask"
    return 0
  }
  if sm_warm_split; then
    printf -v sm_key '%q ' "$SM_IMAGE" "${sm_cargs[@]}"
    # The agent (sandman/agent.py): containers started from now on run it when its binary is
    # there; calls go through it unless SANDMAN_AGENT=0 (or this is a call it handed back).
    # The first warm call without the binary starts its build in the background (once: the
    # `.try` file) and goes on.
    sm_agent= sm_agent_call=
    if [[ -n ${SM_AGENT-} ]]; then
      if [[ -z $sm_agent_on ]]; then
        [[ -x $SM_AGENT ]] && sm_agent=$SM_AGENT
      elif [[ -x $SM_AGENT ]]; then
        sm_agent=$SM_AGENT  # a call is handed back by running SM_SELF again: needs one
        [[ -z ${SANDMAN_AGENT_SKIP-} && -n ${SM_SELF-} ]] && sm_agent_call=1
      elif [[ ! -e $SM_AGENT.try && -O ${SM_AGENT%/*} ]] && { : >"$SM_AGENT.try"; } 2>/dev/null; then
        sm_ab=("${SM_REAPER[@]}"); sm_ab[-1]=sandman.agent  # the reaper's command, another module
        (cd / || exit; SANDMAN_ENGINE=$sm_engine setsid "${sm_ab[@]}" build </dev/null >/dev/null 2>&1 &)
      fi
    fi
    sm_napfd= sm_cfd= sm_wagent= sm_wpid=
    for sm_try in 1 2 3; do
      sm_warm_find || sm_warm_start || break
      sm_warm_exec "$@" && exit "$sm_rc"
    done
    [[ -n $sm_cfd ]] && exec {sm_cfd}>&-
  fi
fi
