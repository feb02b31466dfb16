# Included into the shim runtime by sandman (shims/shim.bash, @@WARM@@): the reaper and warm mode.
# A SIGKILLed shim cannot clean up after itself: a per-user reaper removes containers whose
# shim is gone. Start it if it is not running (a pidfile read: no fork when it is).
if [[ -n $SM_REAPER_PIDFILE ]]; then
  sm_rp=
  { read -r sm_rp <"$SM_REAPER_PIDFILE"; } 2>/dev/null
  sm_alive=
  if [[ -n $sm_rp && -r /proc/$sm_rp/cmdline ]]; then
    mapfile -d '' sm_cl <"/proc/$sm_rp/cmdline" 2>/dev/null
    [[ " ${sm_cl[*]} " == *" sandman.reaper "* ]] && sm_alive=1
  fi
  [[ -n $sm_alive ]] || (cd / || exit; setsid "${SM_REAPER[@]}" </dev/null >/dev/null 2>&1 &)
fi

# Warm mode (docs/performance.md): `docker exec` into a long-lived container of this tool@version
# that has exactly the mounts, user and network this call's cold container would get. Any
# doubt (an option it does not know, no /bin/sh in the image, a start that fails) means a cold run.
case ${SANDMAN_WARM-} in
  '') sm_warm=${SM_WARM:-0} ;;
  0|no|false|off) sm_warm=0 ;;
  *) sm_warm=1 ;;
esac
if [[ $sm_warm == 1 && -n ${SM_WARM_DIR-} && -d $SM_WARM_DIR && -O $SM_WARM_DIR ]] \
   && [[ -z ${DOCKER_HOST-} || $DOCKER_HOST == unix://* ]]; then
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
        --mount|--group-add|--network|--security-opt|--cap-drop|--cap-add|--tmpfs|--ulimit|--device) sm_cargs+=("$a" "$v") ;;
        *) return 1 ;;
      esac
      (( i += 2 ))
    done
  }
  sm_warm_find() {  # sm_wd/sm_wname: the running warm container made of sm_key, if any
    local d k p cl
    for d in "$SM_WARM_DIR/sandman-warm-$sm_uid-$SM_NAME-"*; do
      k=
      IFS= read -r -d '' k 2>/dev/null <"$d/key"
      [[ $k == "$sm_key" ]] || continue
      sm_wd=$d sm_wname=${d##*/} p=
      read -r p 2>/dev/null <"$d/pid"
      [[ -n $p ]] && mapfile -d '' cl 2>/dev/null <"/proc/$p/cmdline" && [[ " ${cl[*]} " == *" $sm_wname "* ]]
      return
    done
    return 1
  }
  sm_warm_start() {  # start the warm container for sm_key, or join the one being started
    local h out p i m=()
    read -r h _ < <(printf '%s\n%s' "$SM_WARM_DIR" "$sm_key" | sha256sum)
    sm_wname=sandman-warm-$sm_uid-$SM_NAME-${h:0:12} sm_wd=$SM_WARM_DIR/$sm_wname
    mkdir -p -m 700 "$sm_wd" "$sm_wd/calls" || return 1
    for p in signals nap; do
      [[ -p $sm_wd/$p ]] || mkfifo -m 600 "$sm_wd/$p" 2>/dev/null || [[ -p $sm_wd/$p ]] || return 1
    done
    exec {sm_napfd}<>"$sm_wd/nap"  # nobody writes to it: `read -t` on it is a builtin sleep
    for (( i = 0; i < ${#sm_cargs[@]}; i++ )); do
      [[ ${sm_cargs[i]} == --mount ]] && m+=("${sm_cargs[++i]}")
    done
    printf '%s\n' "${m[@]}" >"$sm_wd/mounts.$$" && mv -f "$sm_wd/mounts.$$" "$sm_wd/mounts" || return 1
    printf '%s' "$sm_key" >"$sm_wd/key.$$" && mv -f "$sm_wd/key.$$" "$sm_wd/key" || return 1
    for (( i = 0; i < 50; i++ )); do
      out=$("$SM_DOCKER" run -d --rm --init --name "$sm_wname" --log-driver none --pull never \
        --label io.sandman.role=warm --label "io.sandman.tool=$SM_TOOL" --label "io.sandman.version=$SM_VERSION" \
        --label "io.sandman.uid=$sm_uid" --label "io.sandman.host=$SM_HOST" --label "io.sandman.home=$SM_WARM_DIR" \
        --label "io.sandman.idle=${SANDMAN_WARM_IDLE_SECONDS:-$SM_WARM_IDLE}" \
        "${sm_cargs[@]}" --mount "type=bind,\"source=${sm_wd//\"/\"\"}/calls\",target=/run/sandman-warm/calls" \
        --mount "type=bind,\"source=${sm_wd//\"/\"\"}/signals\",target=/run/sandman-warm/signals" \
        --workdir / --entrypoint /bin/sh "$SM_IMAGE" \
        -c 'exec 3<>/run/sandman-warm/signals; while read -r s p <&3; do kill -s "$s" "$p" 2>/dev/null; done' \
        "$sm_wname" 2>&1 >/dev/null)
      if [[ $? == 0 || $out == *"already in use"* ]]; then
        p=$("$SM_DOCKER" inspect -f '{{if .State.Running}}{{.State.Pid}}{{end}}' "$sm_wname" 2>/dev/null)
        if [[ -n $p && $p != 0 ]]; then
          printf '%s\n' "$p" >"$sm_wd/pid.$$" && mv -f "$sm_wd/pid.$$" "$sm_wd/pid"
          return
        fi
      elif [[ $out != *"is already in progress"* && $out != *"is not running"* ]]; then
        printf 'sandman: warning: %s@%s: no warm container, running cold: %s\n' "$SM_TOOL" "$SM_VERSION" "${out%%$'\n'*}" >&2
        return 1
      fi
      read -r -t 0.1 -u "$sm_napfd" _
    done
    return 1
  }
  sm_warm_deliver() {  # pass pending signals to the tool through the container's signal loop
    local s p= n=0
    while :; do
      read -r p 2>/dev/null <"$sm_call"
      [[ $p == [0-9]* ]] && break
      if (( n++ > 150 )) || ! kill -0 "$sm_cp" 2>/dev/null; then sm_pending=(); return; fi
      read -r -t 0.02 -u "$sm_napfd" _
    done
    for s in "${sm_pending[@]}"; do printf '%s %s\n' "$s" "$p" 1<>"$sm_wd/signals"; done
    sm_pending=()
  }
  sm_warm_exec() {  # run the call; sm_rc is its status. False when the exec never started.
    local p= tok
    read -r p 2>/dev/null </proc/$$/stat
    p=${p##*) }; read -r -a p <<<"$p"
    tok=$$-${p[19]}
    sm_call=$sm_wd/calls/$tok
    { : >"$sm_call" && : >"$sm_wd/used"; } 2>/dev/null || return 1
    [[ -n $sm_napfd ]] || exec {sm_napfd}<>"$sm_wd/nap"
    sm_pending=()
    trap '' TERM HUP
    "$SM_DOCKER" exec -i "${sm_xargs[@]}" "$sm_wname" /bin/sh -c 'echo "$$" >"$0" || exit 125; exec "$@"' \
      "/run/sandman-warm/calls/$tok" "${SM_PREFIX[@]}" "$@" 0<&0 {sm_napfd}<&- &
    sm_cp=$!
    trap 'sm_pending+=(INT)' INT; trap 'sm_pending+=(TERM)' TERM; trap 'sm_pending+=(HUP)' HUP
    while :; do
      wait "$sm_cp"; sm_rc=$?
      (( ${#sm_pending[@]} )) || break
      sm_warm_deliver
    done
    trap - INT TERM HUP
    p=
    read -r p 2>/dev/null <"$sm_call"
    # Killed by a signal: the client may have died (SIGPIPE under `| head`) with the tool still
    # running; its pid stays in the call file, so the reaper kills it once this shim is gone.
    (( sm_rc > 128 )) || printf done >"$sm_call"
    [[ -n $p ]] || (( sm_rc != 1 && sm_rc != 126 ))
  }
  if sm_warm_split; then
    printf -v sm_key '%q ' "$SM_IMAGE" "${sm_cargs[@]}"
    sm_napfd=
    for sm_try in 1 2; do
      sm_warm_find || sm_warm_start || break
      sm_warm_exec "$@" && exit "$sm_rc"
      rm -f "$sm_wd/pid"  # it was stopped under us: start a new one
    done
  fi
fi
