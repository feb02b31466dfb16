# sandman shim runtime: sourced by every shim of a SANDMAN_HOME (see docs/runtime.md).
# Written by `sandman install`/`reshim` to <data>/runtime/shim-<sha12>.bash, named by the hash
# of its content: never edit it, a changed runtime is a new file. A shim holds only its values
# (SM_* assignments) and then sources this file, so nothing but bash builtins runs between the
# user's Enter and `exec docker run`.
# Label names and exit codes, rendered from sandman/names.py:
@@NAMES@@

sm_die() { printf 'sandman: %s\n' "$1" >&2; exit "$2"; }

# config.toml changed since this shim was written: let sandman rewrite it, then run the new one.
if [[ -n $SM_CONFIG && -n $SM_SELF && $SM_CONFIG -nt $SM_SELF && -z ${SANDMAN_NO_REFRESH-} ]]; then
  SANDMAN_NO_REFRESH=1 "${SM_REFRESH[@]}" >&2 || sm_die "${SM_TOOL}@${SM_VERSION}: could not apply the changed $SM_CONFIG (see above)" "$SM_EXIT_STATE"
  SANDMAN_NO_REFRESH=1 exec "$SM_SELF" "$@"
fi

# The engine: Docker, or Podman (rootless as any user but root: its own store, no daemon, no
# group that is root in disguise). SANDMAN_ENGINE picks the other one for this call.
sm_engine=$SM_ENGINE
if [[ ${SANDMAN_ENGINE-} == docker || ${SANDMAN_ENGINE-} == podman ]] && [[ $SANDMAN_ENGINE != "$SM_ENGINE" ]]; then
  sm_engine=$SANDMAN_ENGINE
  [[ $sm_engine == podman ]] && SM_DOCKER=$SM_PODMAN_CLI || SM_DOCKER=$SM_DOCKER_CLI
fi
# Podman's API sockets (rootful, and this user's by Podman's own rule) are never mounted,
# whichever engine runs the call.
if [[ -n ${XDG_RUNTIME_DIR-} ]]; then
  sm_prun=$XDG_RUNTIME_DIR
elif [[ -d /run/user/$EUID && -O /run/user/$EUID && -w /run/user/$EUID ]]; then
  sm_prun=/run/user/$EUID
else
  sm_prun=/tmp/podman-run-$EUID
fi
(( EUID )) || sm_prun=/run
sm_psocks=(/run/podman/podman.sock "$sm_prun/podman/podman.sock")
# -- runtime folder rule (sandman/engines.py runtime_dir_problem: the same cases, one test) --
# sm_rundir_ok DIR: may rootless Podman keep this user's run-time state in DIR? Only a real
# folder (not a link), the user's own, writable by nobody else; else false, with sm_why. The
# mode bits need one stat (a fork: bash has no builtin for them), and only the owner can change
# them: once a folder passed, the shim leaves its own mark in it, and later calls that find the
# mark (the user's own file, not a link) skip the fork.
sm_rundir_ok() {
  local m
  sm_why=
  if [[ -L $1 ]]; then
    sm_why="is a symbolic link"
  elif [[ ! -d $1 ]]; then
    [[ -e $1 ]] && sm_why="is not a folder" || sm_why="cannot be read"
  elif [[ ! -O $1 ]]; then
    m=$(command -p stat -c %u -- "$1" 2>/dev/null)
    sm_why="belongs to uid ${m:-?}, not to you"
  elif [[ -f $1/.sandman-runtime-ok && -O $1/.sandman-runtime-ok && ! -L $1/.sandman-runtime-ok ]]; then
    :
  else
    m=$(command -p stat -c %a -- "$1" 2>/dev/null)
    if [[ -z $m ]]; then
      sm_why="cannot be read"
    elif (( 8#$m & 8#22 )); then
      sm_why="is writable by others (mode $m)"
    else
      { : >"$1/.sandman-runtime-ok"; } 2>/dev/null
    fi
  fi
  [[ -z $sm_why ]]
}
# -- end of the runtime folder rule --
sm_rootless=
if [[ $sm_engine == podman ]]; then
  [[ -n $SM_DOCKER && -x $SM_DOCKER ]] || sm_die "${SM_TOOL}@${SM_VERSION}: this shim runs Podman, which is not installed here (install podman, or set engine = \"docker\" in config.toml and run sandman reshim --all)" "$SM_EXIT_ENGINE_MISSING"
  if (( EUID )); then
    sm_rootless=1
    # rootless Podman maps the user's subordinate ids: without a range nothing can start
    sm_uname=
    while IFS=: read -r sm_n _ sm_u _; do [[ $sm_u == "$EUID" ]] && { sm_uname=$sm_n; break; }; done </etc/passwd
    for sm_f in /etc/subuid /etc/subgid; do
      sm_ok=
      { while IFS=: read -r sm_n _; do [[ -n $sm_n && ( $sm_n == "$sm_uname" || $sm_n == "$EUID" ) ]] && { sm_ok=1; break; }; done <"$sm_f"; } 2>/dev/null
      [[ -n $sm_ok ]] || sm_die "rootless Podman needs subordinate uid and gid ranges for ${sm_uname:-uid $EUID} ($sm_f has none): an admin runs usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${sm_uname:-USER}, then podman system migrate" "$SM_EXIT_SUBID"
    done
    # Podman keeps its run-time state (which containers run, their exit files) in this folder;
    # without XDG_RUNTIME_DIR it would follow $TMPDIR, and a call with another TMPDIR would
    # take every running container of this user for stale. One folder for every call, and only
    # one that is the user's: /tmp/podman-run-UID is a name any user can take first.
    [[ -e $sm_prun || -L $sm_prun ]] || mkdir -m 700 "$sm_prun" 2>/dev/null
    if [[ -e $sm_prun || -L $sm_prun ]] && ! sm_rundir_ok "$sm_prun"; then
      sm_die "Podman's runtime folder $sm_prun $sm_why; sandman does not use it: remove it (an admin, if it is not yours) or set XDG_RUNTIME_DIR to a folder of your own (mode 0700)" "$SM_EXIT_ENGINE_SETUP"
    fi
    [[ -n ${XDG_RUNTIME_DIR-} ]] || export XDG_RUNTIME_DIR=$sm_prun
  fi
  sm_sock=$sm_prun/podman/podman.sock
  (( EUID )) || sm_sock=/run/podman/podman.sock
  # CONTAINER_HOST makes podman a client of that socket (as DOCKER_HOST does docker)
  [[ ${CONTAINER_HOST-} != unix://* || -S ${CONTAINER_HOST#unix://} ]] || sm_die "cannot reach Podman: no socket at ${CONTAINER_HOST#unix://} (CONTAINER_HOST); start it (podman system service) or unset CONTAINER_HOST" "$SM_EXIT_DAEMON_UNAVAILABLE"
else
  # A local socket is checked with builtins (a tcp:// or ssh:// DOCKER_HOST is left to docker).
  sm_sock=$SM_SOCKET
  [[ ${DOCKER_HOST-} == unix://* ]] && sm_sock=${DOCKER_HOST#unix://}
  if [[ -z ${DOCKER_HOST-} || $DOCKER_HOST == unix://* ]]; then
    [[ -S $sm_sock ]] || sm_die "cannot reach the Docker daemon: no socket at $sm_sock; start it (systemctl start docker, or dockerd) or set DOCKER_HOST" "$SM_EXIT_DAEMON_UNAVAILABLE"
    [[ -r $sm_sock && -w $sm_sock ]] || sm_die "permission denied on the Docker socket $sm_sock; add yourself to the 'docker' group (then log in again) or set DOCKER_HOST" "$SM_EXIT_DAEMON_PERMISSION"
  fi
fi

sm_uid=$EUID sm_gid= sm_groups=()
while read -r sm_k sm_a sm_b sm_rest; do
  case $sm_k in
    Gid:) sm_gid=$sm_b ;;
    Groups:) read -r -a sm_groups <<<"$sm_a $sm_b $sm_rest" ;;
  esac
done </proc/self/status

# Paths are decided on what they really are: every mount source is resolved (symlinks, ., ..,
# //) before it is checked, and mounted by its real path. `cd -P DIR` + $PWD resolves a folder
# with builtins; only a last part that is itself a symlink costs a fork of realpath.
unset CDPATH
builtin cd -P . 2>/dev/null || sm_die "${SM_TOOL}@${SM_VERSION}: the current directory is not reachable" "$SM_EXIT_MOUNT"
sm_cwd=$PWD
sm_real() {  # sm_rp: the real path of the existing $1 (absolute); false when it cannot be had
  local p=$1 d
  if [[ -d $p ]]; then
    if builtin cd -P -- "$p" 2>/dev/null; then
      sm_rp=$PWD
      while [[ $sm_rp == //* ]]; do sm_rp=${sm_rp:1}; done  # bash keeps a leading //
      builtin cd -- "$sm_cwd" 2>/dev/null
      return 0
    fi
    sm_rp=$(realpath -e -- "$p" 2>/dev/null) && [[ $sm_rp == /* ]]  # a folder we cannot enter
    return
  fi
  if [[ -L $p ]]; then  # the last part is a symlink: the rare path
    sm_rp=$(realpath -e -- "$p" 2>/dev/null) && [[ $sm_rp == /* ]]
    return
  fi
  [[ -e $p ]] || return 1
  d=${p%/*}
  sm_real "${d:-/}" || return 1
  sm_rp=${sm_rp%/}/${p##*/}
}
sm_norm() {  # sm_np: the absolute $1 without //, . and .. (lexically: where the tool will look)
  local p=$1/ c out=
  while [[ -n $p ]]; do
    c=${p%%/*} p=${p#*/}
    case $c in
      '' | .) ;;
      ..) out=${out%/*} ;;
      *) out+=/$c ;;
    esac
  done
  sm_np=${out:-/}
}
sm_home=${HOME:-/nonexistent}
[[ $sm_home == /* && -d $sm_home ]] && sm_real "$sm_home" && sm_home=$sm_rp
# The run-time folders of this user (XDG_RUNTIME_DIR, /run/user/UID, Podman's): never mounted
# through a path, whole or in part (sm_refused arg).
sm_rtds=()
for sm_v in "${XDG_RUNTIME_DIR-}" "/run/user/$EUID" "$sm_prun"; do
  [[ $sm_v == /* && -d $sm_v ]] && sm_real "$sm_v" && sm_rtds+=("$sm_rp")
done
sm_socks=("$SM_SOCKET" "${SM_SOCKET_REAL[@]}")
if [[ $sm_engine == docker && $sm_sock != "$SM_SOCKET" && $sm_sock == /* ]]; then
  sm_socks+=("$sm_sock")
  sm_real "$sm_sock" && sm_socks+=("$sm_rp")
fi

sm_net=$SM_NETWORK
[[ -n $sm_rootless && $sm_net == bridge ]] && sm_net=slirp4netns  # see --userns below
sm_args=(
  --rm -i --init --log-driver none --pull never
  --name "sandman-${SM_NAME}-$$-${RANDOM}"
  --label "$SM_LABEL_ROLE=run" --label "$SM_LABEL_TOOL=$SM_TOOL" --label "$SM_LABEL_VERSION=$SM_VERSION"
  --label "$SM_LABEL_PID=$$" --label "$SM_LABEL_HOST=$SM_HOST" --label "$SM_LABEL_UID=$sm_uid"
  --label "$SM_LABEL_REAPER=$SM_REAPER_PIDFILE"
  --user "$sm_uid:$sm_gid"
  --security-opt no-new-privileges --cap-drop ALL
  --network "$sm_net"
  --entrypoint ""
)
# Rootless Podman: the caller's uid and gid are the same numbers inside (files made in the
# current directory are theirs); only they are mapped, so no supplementary group goes along.
# Its "bridge" is a CNI network that needs a logind session's run-time folder; slirp4netns,
# rootless Podman's own default, gives the same outbound-only network everywhere.
[[ -n $sm_rootless ]] && sm_args+=(--userns keep-id)
# An image of another CPU (the recipe's platform) is named so: docker runs it through QEMU
# user emulation without printing a platform warning on the user's stderr.
[[ -n ${SM_PLATFORM-} ]] && sm_args+=(--platform "$SM_PLATFORM")
# Capabilities and devices only when the recipe (or config.toml) asks; a device must exist
# here, as a device, or nothing runs.
for sm_v in "${SM_CAP_ADD[@]}"; do sm_args+=(--cap-add "$sm_v"); done
for sm_v in "${SM_DEVICES[@]}"; do
  sm_src=${sm_v%%:*}
  [[ -c $sm_src || -b $sm_src ]] || sm_die "${SM_TOOL}@${SM_VERSION}: device $sm_src does not exist on this host (it is in the recipe's devices; set [tools.$SM_TOOL] devices in config.toml to use another)" "$SM_EXIT_DEVICE"
  sm_args+=(--device "$sm_v")
done
# Supplementary groups go along, except any group that owns the Docker socket (recorded at
# install time): a container never gets the right to talk to the daemon.
[[ -n $sm_rootless ]] && sm_groups=()
for sm_g in "${sm_groups[@]}"; do
  [[ $sm_g == "$sm_gid" || " ${SM_SOCKET_GIDS[*]} " == *" $sm_g "* ]] || sm_args+=(--group-add "$sm_g")
done
[[ -t 0 && -t 1 ]] && sm_args+=(-t)

# Mounts. sm_dsts holds every destination so that nothing is mounted twice or under a mount
# that already covers it with the same or more rights.
sm_dsts=() sm_modes=() sm_srcs=()
sm_refused() {  # real [arg]: sets sm_why to the reason a real host path may not be mounted; true if refused
  # With arg (the cwd, an argument, a path_env variable, a home file: paths anyone can spell
  # with a symlink) also the host's kernel and device folders and the run-time folders that
  # hold the session's and services' sockets: what is in them is not data.
  local p=$1 s
  sm_why=
  if [[ $p == / && -z ${SANDMAN_ALLOW_ROOT-} ]]; then
    sm_why="it is / (set SANDMAN_ALLOW_ROOT=1 to allow)"
  elif [[ ( $p == "$sm_home" || $p == "$sm_home/" ) && -z ${SANDMAN_ALLOW_HOME-} ]]; then
    sm_why="it is your home directory (set SANDMAN_ALLOW_HOME=1 to allow)"
  else
    for s in "${sm_socks[@]}"; do
      [[ $s == "$p" || $s == "${p%/}"/* ]] && sm_why="it would expose the Docker socket $s"
    done
    for s in "${sm_psocks[@]}"; do
      [[ -z $sm_why && ( $s == "$p" || $s == "${p%/}"/* ) ]] && sm_why="it would expose the Podman socket $s"
    done
  fi
  [[ -n $sm_why || -z $2 ]] && { [[ -n $sm_why ]]; return; }
  case $p in
    /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) s=${p#/}; sm_why="it is in /${s%%/*}, the host's kernel and devices" ;;
    /run/media/*/*) ;;  # a mounted medium (udisks): data, not the run-time folder itself
    /run|/run/*) sm_why="it is in /run, the host's run-time folder (service and session sockets)" ;;
    *)
      for s in "${sm_rtds[@]}"; do
        [[ -z $sm_why && ( $p == "$s" || $p == "$s"/* ) ]] && sm_why="it is in your run-time folder $s (your session's sockets)"
      done
  esac
  [[ -n $sm_why ]]
}
sm_covered() {  # is $1 already inside a mount with at least mode $2?
  local i d
  for i in "${!sm_dsts[@]}"; do
    d=${sm_dsts[$i]}
    if [[ $1 == "$d" || $1 == "${d%/}"/* ]]; then
      [[ ${sm_modes[$i]} == rw || $2 == ro ]] && return 0
    fi
  done
  return 1
}
sm_bind() {  # src dst mode: add the mount (CSV-quoted: paths may hold commas and quotes)
  local opt=
  [[ $3 == ro ]] && opt=,readonly
  sm_args+=(--mount "type=bind,\"source=${1//\"/\"\"}\",\"target=${2//\"/\"\"}\"$opt")
  sm_dsts+=("$2") sm_modes+=("$3") sm_srcs+=("$1")
}
sm_mount() {  # realsrc dst mode what: skip when covered (nothing new is seen), refuse, else bind
  sm_covered "$2" "$3" && return
  sm_refused "$1" arg && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $4 (really $1): $sm_why" "$SM_EXIT_MOUNT"
  sm_bind "$1" "$2" "$3"
}
sm_map_path() {  # mount a path given on the command line or in the environment, where it is
  local p=$1 mode=$2 what="$3 $1" t dir tdir
  [[ $p == /* ]] || p=$sm_cwd/$p
  sm_norm "$p"; t=$sm_np
  case $t in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) return 0 ;; esac
  if [[ -d $p ]]; then
    sm_real "$p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve $what" "$SM_EXIT_MOUNT"
    sm_mount "$sm_rp" "$t" "$mode" "$what"
    return
  fi
  tdir=${t%/*} tdir=${tdir:-/}
  dir=${p%/*} dir=${dir:-/}
  if [[ -e $p || -L $p ]]; then
    # a file: mount its folder (tools write journals and read sibling files), or the file
    # alone when the folder may not be mounted or is a system folder the image has its own
    # copy of (mounting the host's /usr/lib over the image's would break the tool)
    sm_real "$dir" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve the folder of $what" "$SM_EXIT_MOUNT"
    case $tdir in
      /usr|/usr/*|/lib|/lib/*|/lib32*|/lib64*|/bin|/bin/*|/sbin|/sbin/*|/etc|/etc/*|/boot*|/var/lib|/var/lib/*|/opt|/opt/*) ;;
      *) sm_refused "$sm_rp" arg || { sm_mount "$sm_rp" "$tdir" "$mode" "$what"; return; } ;;
    esac
    # the file alone: refused as a folder would be (a folder that resolves into /proc must not
    # get through as one of its files)
    sm_real "$p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve $what" "$SM_EXIT_MOUNT"
    sm_mount "$sm_rp" "$t" "$mode" "$what"
  elif [[ $tdir == / ]]; then
    :  # /CN=x (openssl -subj) names nothing on this host: every top-level folder exists
  elif [[ -d $dir ]]; then  # a file the tool will create
    sm_real "$dir" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve the folder of $what" "$SM_EXIT_MOUNT"
    sm_refused "$sm_rp" arg && sm_die "${SM_TOOL}@${SM_VERSION}: cannot map $what: its folder $tdir (really $sm_rp) may not be mounted ($sm_why)" "$SM_EXIT_MOUNT"
    sm_mount "$sm_rp" "$tdir" "$mode" "$what"
  fi  # else: not a path on this host, passed on untouched
}
sm_expand() {  # sm_sp: a declared mount source as a path (~ is the home, relative is the cwd's)
  sm_sp=$1
  [[ $sm_sp == "~" || $sm_sp == "~/"* ]] && sm_sp=${HOME:-/nonexistent}${sm_sp:1}
  [[ $sm_sp == /* ]] || sm_sp=$sm_cwd/$sm_sp
}

sm_mount "$sm_cwd" "$sm_cwd" rw "the current directory"
sm_args+=(--workdir "$sm_cwd")

for sm_m in "${SM_MOUNTS[@]}"; do
  IFS='|' read -r sm_name sm_src sm_dst sm_mode sm_opt <<<"$sm_m"
  sm_var=${SM_ENV_PREFIX}_${sm_name^^}; sm_var=${sm_var//[-.]/_}
  [[ -n ${!sm_var-} ]] && sm_src=${!sm_var}
  sm_expand "$sm_src"
  if [[ ! -e $sm_sp ]]; then
    [[ $sm_opt == 1 ]] && continue
    sm_die "${SM_TOOL}@${SM_VERSION}: data directory '$sm_name' is missing: $sm_src (create it, or point $sm_var or [tools.$SM_TOOL.mounts] $sm_name in config.toml at it)" "$SM_EXIT_MOUNT"
  fi
  sm_real "$sm_sp" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve data directory '$sm_name' $sm_src" "$SM_EXIT_MOUNT"
  sm_refused "$sm_rp" && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount data directory '$sm_name' $sm_src (really $sm_rp): $sm_why" "$SM_EXIT_MOUNT"
  sm_bind "$sm_rp" "$sm_dst" "$sm_mode"
done
# Dotfiles the recipe names (~/.my.cnf, ~/.pgpass): each one that exists, read-only, at the same
# place under the container's HOME (/tmp); never the home itself (the recipe cannot name it).
for sm_f in "${SM_HOME_FILES[@]}"; do
  sm_p=$sm_home/$sm_f
  [[ -e $sm_p ]] || continue
  sm_real "$sm_p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve home file ~/$sm_f" "$SM_EXIT_MOUNT"
  sm_refused "$sm_rp" arg && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount home file ~/$sm_f (really $sm_rp): $sm_why" "$SM_EXIT_MOUNT"
  sm_bind "$sm_rp" "/tmp/$sm_f" ro
done
for sm_m in "${SM_EXTRA_MOUNTS[@]}"; do
  IFS='|' read -r sm_src sm_dst sm_mode <<<"$sm_m"
  sm_expand "$sm_src"
  [[ -e $sm_sp ]] || sm_die "${SM_TOOL}@${SM_VERSION}: extra mount source is missing: $sm_src" "$SM_EXIT_MOUNT"
  sm_real "$sm_sp" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve extra mount source $sm_src" "$SM_EXIT_MOUNT"
  sm_refused "$sm_rp" && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $sm_src (really $sm_rp): $sm_why" "$SM_EXIT_MOUNT"
  sm_bind "$sm_rp" "$sm_dst" "$sm_mode"
done

# The invoking user exists in the container (tools that look up their passwd entry work).
# Made at install time for the installing user; for anyone else once, in their own temp dir.
sm_pw=
if [[ $sm_uid == "$SM_PASSWD_UID" && -f $SM_PASSWD_DIR/passwd ]]; then
  sm_pw=$SM_PASSWD_DIR
elif [[ -f $SM_PASSWD_DIR/passwd.base ]]; then
  sm_pw=${TMPDIR:-/tmp}/sandman-$sm_uid
  [[ -d $sm_pw ]] || mkdir -m 700 "$sm_pw" 2>/dev/null
  if [[ -d $sm_pw && -O $sm_pw && ! -L $sm_pw ]]; then
    sm_pw=$sm_pw/${SM_PASSWD_DIR##*/}
    if [[ ! -f $sm_pw/group ]]; then
      mkdir -p "$sm_pw" && {
        while IFS= read -r sm_l; do
          IFS=: read -r _ _ sm_u _ <<<"$sm_l"; [[ $sm_u == "$sm_uid" ]] || printf '%s\n' "$sm_l"
        done <"$SM_PASSWD_DIR/passwd.base"
        printf '%s:x:%s:%s::/tmp:/bin/sh\n' "${USER:-user$sm_uid}" "$sm_uid" "$sm_gid"
      } >"$sm_pw/passwd" && {
        while IFS= read -r sm_l; do printf '%s\n' "$sm_l"; done <"$SM_PASSWD_DIR/group.base"
        sm_found=
        while IFS=: read -r _ _ sm_g _; do [[ $sm_g == "$sm_gid" ]] && sm_found=1; done <"$SM_PASSWD_DIR/group.base"
        [[ -n $sm_found ]] || printf '%s:x:%s:\n' "${USER:-user$sm_uid}" "$sm_gid"
      } >"$sm_pw/group.tmp" && mv -f "$sm_pw/group.tmp" "$sm_pw/group"
    fi
  else
    sm_pw=
  fi
fi
if [[ -n $sm_pw ]]; then
  sm_args+=(--mount "type=bind,\"source=$sm_pw/passwd\",target=/etc/passwd,readonly"
            --mount "type=bind,\"source=$sm_pw/group\",target=/etc/group,readonly")
fi

# Environment: only what is listed here crosses into the container.
sm_args+=(-e HOME=/tmp)
for sm_v in USER LOGNAME TERM COLUMNS LINES LANGUAGE; do
  [[ -n ${!sm_v+x} ]] && sm_args+=(-e "$sm_v")
done
if [[ -n ${TZ+x} ]]; then
  sm_args+=(-e TZ)
  [[ -d /usr/share/zoneinfo ]] && sm_args+=(--mount type=bind,source=/usr/share/zoneinfo,target=/usr/share/zoneinfo,readonly)
elif [[ -e /etc/localtime ]]; then
  sm_args+=(--mount type=bind,source=/etc/localtime,target=/etc/localtime,readonly)
fi
sm_locale() {  # sets sm_loc: the host's locale if the image has it, else a fallback
  local n=${1,,} l
  n=${n//-/}
  for l in "${SM_LOCALES[@]}"; do
    [[ $n == "$l" ]] && { sm_loc=$1; return; }
  done
  case $n in *utf8*) sm_loc=$SM_UTF8_LOCALE ;; *) sm_loc=C ;; esac
}
for sm_v in LANG LC_ALL LC_CTYPE LC_MESSAGES LC_COLLATE LC_NUMERIC LC_TIME LC_MONETARY; do
  [[ -n ${!sm_v-} ]] || continue
  sm_locale "${!sm_v}"
  sm_args+=(-e "$sm_v=$sm_loc")
done
for sm_v in "${SM_PASS_ENV[@]}"; do
  [[ -n ${!sm_v+x} ]] && sm_args+=(-e "$sm_v")
done
for sm_v in "${SM_ENV[@]}"; do
  sm_args+=(-e "$sm_v")
done
# config.toml's env values may be secrets: they live in a private file (0600) of the owner's
# state, read here with builtins, NUL-separated NAME=value; other users do not get them.
if [[ -n $SM_ENV_FILE && -r $SM_ENV_FILE ]]; then
  while IFS= read -r -d '' sm_v; do sm_args+=(-e "$sm_v"); done <"$SM_ENV_FILE"
fi
for sm_pe in "${SM_PATH_ENV[@]}"; do
  sm_v=${sm_pe%:*}
  [[ -n ${!sm_v-} ]] || continue
  sm_args+=(-e "$sm_v")
  [[ ${!sm_v} == /* ]] && sm_map_path "${!sm_v}" "${sm_pe##*:}" "\$$sm_v"
done

# Arguments: paths that exist on the host (or whose folder does) are mounted where the tool
# will look for them, absolute or relative (`../b/x.db`); the argv itself is passed on as is.
# A bare name is in the current directory, which is mounted already.
if [[ $SM_PATH_ARGS != off ]]; then
  for sm_a in "$@"; do
    case $sm_a in
      /*) sm_map_path "$sm_a" "$SM_PATH_ARGS" "argument" ;;
      -*=/*) sm_map_path "${sm_a#*=}" "$SM_PATH_ARGS" "argument" ;;
      -*) ;;
      */*) sm_map_path "$sm_a" "$SM_PATH_ARGS" "argument" ;;
    esac
  done
fi

if [[ $SM_NEEDCMD == 1 && $# -gt 0 ]]; then  # a command whose name differs in the image
  for sm_m in "${SM_RUN_AS[@]}"; do
    [[ $1 == "${sm_m%%=*}" ]] && { set -- "${sm_m#*=}" "${@:2}"; break; }
  done
fi
if [[ $SM_NEEDCMD == 1 && $# -eq 0 ]]; then
  sm_die "${SM_TOOL}-${SM_VERSION} needs a command to run, for example: ${SM_TOOL}-${SM_VERSION} ${SM_COMMANDS[0]:-COMMAND} ARGS (commands: ${SM_COMMANDS[*]:-none declared})" "$SM_EXIT_USAGE"
fi

# Podman's --init (catatonit) exits 1 when it cannot exec the command; a shell, and Docker's
# --init, say 127 (not found) or 126 (not executable). In an image with /bin/sh, a cold Podman
# call goes through `sh -c 'exec "$@"'`: the shell replaces itself with the tool (same pid,
# argv, stdin, signals), or exits 127/126 with its message. Warm calls already go through sh.
sm_exec=()
[[ $sm_engine == podman && ${SM_SHELL-0} == 1 ]] && sm_exec=(/bin/sh -c 'exec "$@"' sh)

if [[ -n ${SANDMAN_DRY_RUN-} && ${SANDMAN_DRY_RUN-} != 0 ]]; then
  # For people, on stderr: what the container would get. The exact command goes to stdout.
  sm_sum=() sm_envs=() sm_priv=() sm_i=0
  while (( sm_i < ${#sm_args[@]} )); do
    sm_a=${sm_args[sm_i]} sm_v=${sm_args[sm_i+1]-}
    case $sm_a in
      --mount)
        sm_mode=rw; [[ $sm_v == *,readonly ]] && sm_mode=ro sm_v=${sm_v%,readonly}
        sm_v=${sm_v#type=bind,}; sm_v=${sm_v//\"\"/$'\1'}; sm_v=${sm_v//\"/}; sm_v=${sm_v//$'\1'/\"}
        sm_src=${sm_v#source=}; sm_src=${sm_src%,target=*}
        sm_sum+=("  mount $sm_mode: $sm_src -> ${sm_v##*,target=}") ;;
      --user) sm_sum+=("  user:     $sm_v (your uid:gid)") ;;
      --group-add) sm_sum+=("  group:    $sm_v") ;;
      --network) sm_sum+=("  network:  $sm_v") ;;
      --platform) sm_sum+=("  platform: $sm_v (QEMU user emulation)") ;;
      --device) sm_sum+=("  device:   $sm_v") ;;
      --cap-add) sm_priv+=("capability added: $sm_v") ;;
      -e) sm_envs+=("${sm_v%%=*}") ;;
      --cap-drop) sm_priv+=("capabilities dropped: $sm_v") ;;
      --security-opt) sm_priv+=("$sm_v") ;;
      --userns) sm_sum+=("  userns:   $sm_v (rootless Podman: your uid:gid inside)") ;;
      --workdir) sm_sum+=("  workdir:  $sm_v") ;;
      *) (( sm_i-- )) ;;
    esac
    (( sm_i += 2 ))
  done
  {
    printf 'sandman: dry run of %s@%s (nothing is started); the container would get:\n' "$SM_TOOL" "$SM_VERSION"
    printf '  image:    %s\n' "$SM_IMAGE"
    printf '%s\n' "${sm_sum[@]}"
    printf '  env:      %s\n' "${sm_envs[*]}"
    sm_v=; for sm_a in "${sm_priv[@]}"; do sm_v+="${sm_v:+, }$sm_a"; done
    (( ${#SM_DEVICES[@]} )) && sm_a= || sm_a="; no devices"
    printf '  limits:   %s%s\n' "$sm_v" "$sm_a"
    printf '  command: '; printf ' %q' "${SM_PREFIX[@]}" "$@"; printf '\n'
  } >&2
  # Run by hand, the command has no shim behind it: without the shim's pid label the reaper
  # leaves it alone (with it, the reaper would see a dead shim and remove the container).
  sm_run=() sm_i=0
  while (( sm_i < ${#sm_args[@]} )); do
    sm_a=${sm_args[sm_i]}
    if [[ $sm_a == --label && ( ${sm_args[sm_i+1]} == "$SM_LABEL_PID="* || ${sm_args[sm_i+1]} == "$SM_LABEL_REAPER="* ) ]]; then
      (( sm_i += 2 )); continue
    fi
    sm_run+=("$sm_a"); (( sm_i += 1 ))
  done
  printf '%q ' "$SM_DOCKER" run "${sm_run[@]}" "$SM_IMAGE" "${sm_exec[@]}" "${SM_PREFIX[@]}" "$@"
  printf '\n'
  exit 0
fi

@@WARM@@

exec "$SM_DOCKER" run "${sm_args[@]}" "$SM_IMAGE" "${sm_exec[@]}" "${SM_PREFIX[@]}" "$@"
