# sandman shim runtime: sourced by every shim of a SANDMAN_HOME (see docs/runtime.md).
# Written by `sandman install`/`reshim` to <data>/runtime/shim-<sha12>.bash, named by the hash
# of its content: never edit it, a changed runtime is a new file. A shim holds only its values
# (SM_* assignments) and its front (shims/front.sh, in sh: the warm fast path), and bash then
# sources this file, so nothing but shell builtins runs between the user's Enter and `exec
# docker run`.
# Label names and exit codes, rendered from sandman/names.py:
@@NAMES@@

sm_die() { printf 'sandman: %s\n' "$1" >&2; exit "$2"; }

# Completion mode (issue 21 item 7; docs/security.md, "Completion and manual pages"): the Tab
# handler sandman registered for this shim (sandman/toolfiles.py) runs it with
# SANDMAN_COMPLETE=<command in the image>, SANDMAN_COMPLETE_CWORD/_LINE/_POINT and the words as
# arguments. The command's completion script is the image's code: it runs here in the tool's
# container and sandbox, never in the user's shell, with every mount read-only (it may list the
# cwd, never write it), no argument mounted (the words are not the tool's arguments), stdin
# /dev/null, no tty; only its words come back (NUL-separated, sm_complete_eval below).
sm_complete=
if [[ -n ${SANDMAN_COMPLETE-} ]]; then
  [[ $SANDMAN_COMPLETE =~ ^[A-Za-z0-9._+-]+$ && ${SANDMAN_COMPLETE_CWORD-} =~ ^[0-9]{1,4}$ && ${SANDMAN_COMPLETE_POINT:-0} =~ ^[0-9]{1,6}$ && ${SM_SHELL-0} == 1 ]] || exit "$SM_EXIT_USAGE"
  sm_complete=$SANDMAN_COMPLETE
  exec </dev/null
fi

# config.toml changed since this shim was written: let sandman rewrite it, then run the new one.
# (Not for a completion: the next call of the tool does it.)
if [[ -n $SM_CONFIG && -n $SM_SELF && $SM_CONFIG -nt $SM_SELF && -z ${SANDMAN_NO_REFRESH-} && -z $sm_complete ]]; then
  SANDMAN_NO_REFRESH=1 "${SM_REFRESH[@]}" >&2 || sm_die "${SM_TOOL}@${SM_VERSION}: could not apply the changed $SM_CONFIG (see above)" "$SM_EXIT_STATE"
  SANDMAN_NO_REFRESH=1 exec "$SM_SELF" "$@"
fi

# The fast path ran before this file: the shim's front (shims/front.sh), in sh, which also
# read the switches sm_warm and sm_agent_on. A call it handed here runs the whole runtime.
unset SANDMAN_ROUTE_SKIP
sm_xdg0=${XDG_RUNTIME_DIR+set}  # the route is written down only for the environment as it came

# The engine: Docker, or Podman (rootless as any user but root: its own store, no daemon, no
# group that is root in disguise). Chosen once, by the sandman command that wrote this shim
# (sandman/engine_choice.py); the shim never decides it again.
sm_engine=$SM_ENGINE
# -- the Podman folder rule (sandman/engine_choice.py runs this copy: podman_paths) --
# Podman keeps a user's run-time state (which containers run, their exit files, the API socket,
# registry logins) in one folder, by Podman's own rule: root's is /run; a user's is
# XDG_RUNTIME_DIR, else /run/user/UID when it is theirs, else /tmp/podman-run-UID. (Podman itself
# would follow $TMPDIR there, and a call with another TMPDIR would take every running container
# of this user for stale: sandman pins the folder and exports it as XDG_RUNTIME_DIR.)
# sm_podman_paths sets sm_prun, sm_psock (this user's API socket) and sm_psocks (every Podman
# socket, which no mount may expose, whichever engine runs the call).
sm_podman_paths() {
  if (( ! EUID )); then
    sm_prun=/run
  elif [[ -n ${XDG_RUNTIME_DIR-} ]]; then
    sm_prun=$XDG_RUNTIME_DIR
  elif [[ -d /run/user/$EUID && -O /run/user/$EUID && -w /run/user/$EUID ]]; then
    sm_prun=/run/user/$EUID
  else
    sm_prun=/tmp/podman-run-$EUID
  fi
  sm_psock=$sm_prun/podman/podman.sock
  sm_psocks=(/run/podman/podman.sock "$sm_psock")
}
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
# sm_podman_folder [make]: may rootless Podman use sm_prun (made, mode 0700, when missing and
# asked to)? /tmp/podman-run-UID is a name any user can take first. False with the line to say
# in sm_why.
sm_podman_folder() {
  sm_why=
  [[ $1 != make || -e $sm_prun || -L $sm_prun ]] || mkdir -m 700 "$sm_prun" 2>/dev/null
  if [[ -e $sm_prun || -L $sm_prun ]] && ! sm_rundir_ok "$sm_prun"; then
    sm_why="Podman's runtime folder $sm_prun $sm_why; sandman does not use it: remove it (an admin, if it is not yours) or set XDG_RUNTIME_DIR to a folder of your own (mode 0700)"
    return 1
  fi
}
# -- end of the Podman folder rule --
# -- the subordinate id rule (sandman/engine_choice.py runs this copy: subid_ranges) --
# Rootless Podman maps the user's subordinate ids: without a range in both files nothing starts.
sm_subid_files=(/etc/subuid /etc/subgid)
# sm_subids USER UID: the ranges of the account (by name or uid) in sm_ranges ("start+count",
# "" where a file has none, in the order of sm_subid_files); false with sm_why when one is missing.
sm_subids() {
  local f n s c
  sm_ranges=() sm_why=
  for f in "${sm_subid_files[@]}"; do
    sm_ranges+=("")
    { while IFS=: read -r n s c; do
        [[ -n $n && ( $n == "$1" || $n == "$2" ) && -n $c && $c != *:* ]] && { sm_ranges[-1]=$s+$c; break; }
      done <"$f"; } 2>/dev/null
    [[ -n ${sm_ranges[-1]} || -n $sm_why ]] || sm_why="rootless Podman needs subordinate uid and gid ranges for ${1:-uid $2} ($f has none): an admin runs \`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${1:-USER}\`, then \`podman system migrate\`"
  done
  [[ -z $sm_why ]]
}
# -- end of the subordinate id rule --
sm_podman_paths
sm_rootless=
if [[ $sm_engine == podman ]]; then
  [[ -n $SM_DOCKER && -x $SM_DOCKER ]] || sm_die "${SM_TOOL}@${SM_VERSION}: this shim runs Podman, which is not installed here (install podman, or set engine = \"docker\" in config.toml and run sandman reshim --all)" "$SM_EXIT_ENGINE_MISSING"
  if (( EUID )); then
    sm_rootless=1
    sm_uname=
    while IFS=: read -r sm_n _ sm_u _; do [[ $sm_u == "$EUID" ]] && { sm_uname=$sm_n; break; }; done </etc/passwd
    sm_subids "$sm_uname" "$EUID" || sm_die "$sm_why" "$SM_EXIT_SUBID"
    # One run-time folder for every call, and only one that is the user's.
    sm_podman_folder make || sm_die "$sm_why" "$SM_EXIT_ENGINE_SETUP"
    [[ -n ${XDG_RUNTIME_DIR-} ]] || export XDG_RUNTIME_DIR=$sm_prun
  fi
  sm_sock=$sm_psock
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

sm_uid=$EUID sm_gid= sm_groups=() sm_umask=
while read -r sm_k sm_a sm_b sm_rest; do
  case $sm_k in
    Gid:) sm_gid=$sm_b ;;
    Groups:) read -r -a sm_groups <<<"$sm_a $sm_b $sm_rest" ;;
    Umask:) sm_umask=$sm_a ;;
  esac
done </proc/self/status

# Paths are decided on what they really are: every mount source is resolved (symlinks, ., ..,
# //) before it is checked, and mounted by its real path. `cd -P DIR` + $PWD resolves a folder
# with builtins; only a last part that is itself a symlink costs a fork of realpath.
unset CDPATH
builtin cd -P . 2>/dev/null || sm_die "${SM_TOOL}@${SM_VERSION}: the current directory is not reachable" "$SM_EXIT_MOUNT"
sm_cwd=$PWD
# The engine mounts a source by its path, which it resolves again when it mounts it: a folder
# swapped for a symlink in between (renameat2 in a loop) would bring in what was never checked
# (issue 19 item 2). So what is checked is also pinned: sm_real leaves in sm_pin what holds the
# object whose real path sm_rp is (an fd, not a name), sm_bind keeps it next to the mount, and
# the container compares each mount with it before the tool runs (sm_pin_cold, agent.c `pin`;
# warm: sm_warm_same). The shim's own cwd is pinned first, and sm_real comes back to it
# through that fd, never through its name.
sm_cwdfd= sm_pinfd=
{ exec {sm_cwdfd}<.; } 2>/dev/null || sm_cwdfd=
sm_back() { builtin cd -P "/dev/fd/$sm_cwdfd" 2>/dev/null || builtin cd -- "$sm_cwd" 2>/dev/null; }
sm_real() {  # sm_rp: the real path of the existing $1 (absolute); false when it cannot be had
  # sm_pin: "/dev/fd/N/." (a folder: fd N is open on it, taken while cd -P had it as the cwd,
  # so its real path is sm_rp), "/dev/fd/N/NAME" (anything else: NAME in the folder open as
  # N; checked later with lstat, so a link swapped in there never passes), or, when nothing
  # can hold it (a folder we cannot enter or read), sm_rp itself.
  local p=$1 d
  [[ -n $sm_pinfd ]] && exec {sm_pinfd}<&-  # the last one's, not taken by sm_bind
  sm_pinfd= sm_pin=
  if [[ -d $p ]]; then
    if builtin cd -P -- "$p" 2>/dev/null; then
      sm_rp=$PWD
      while [[ $sm_rp == //* ]]; do sm_rp=${sm_rp:1}; done  # bash keeps a leading //
      { exec {sm_pinfd}<.; } 2>/dev/null && sm_pin=/dev/fd/$sm_pinfd/. || sm_pinfd= sm_pin=$sm_rp
      sm_back
      return 0
    fi
    sm_rp=$(realpath -e -- "$p" 2>/dev/null) && [[ $sm_rp == /* ]] && sm_pin=$sm_rp  # a folder we cannot enter
    return
  fi
  if [[ -L $p ]]; then  # the last part is a symlink: the rare path
    sm_rp=$(realpath -e -- "$p" 2>/dev/null) && [[ $sm_rp == /* ]] || return 1
    [[ -d $sm_rp || -L $sm_rp ]] && { sm_pin=$sm_rp; return 0; }  # changed since: checked by path
    p=$sm_rp
    d=${p%/*}
    sm_real "${d:-/}" && [[ $sm_rp == "${d:-/}" ]] || return 1  # a folder swapped meanwhile
    sm_rp=$p
  else
    [[ -e $p ]] || return 1
    d=${p%/*}
    sm_real "${d:-/}" || return 1
    sm_rp=${sm_rp%/}/${p##*/}
  fi
  [[ $sm_pin == */. ]] && sm_pin=${sm_pin%.}${p##*/} || sm_pin=$sm_rp
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

# The words of `run` that no call changes come from sandman/plan.py, rendered into the shim:
# security options, network, user namespace, platform, capabilities, devices, labels. A caller
# other than root may need other words (rootless Podman maps its ids and network its own way).
if (( EUID )); then sm_args=("${SM_RUN_USER[@]}"); else sm_args=("${SM_RUN[@]}"); fi
sm_args+=(
  --name "sandman-${SM_NAME}-$$-${RANDOM}"
  --label "$SM_LABEL_PID=$$" --label "$SM_LABEL_UID=$sm_uid"
  --user "$sm_uid:$sm_gid"
)
# A device the plan passes in must exist here, as a device, or nothing runs.
for sm_v in "${SM_DEVICES[@]}"; do
  sm_src=${sm_v%%:*}
  [[ -c $sm_src || -b $sm_src ]] || sm_die "${SM_TOOL}@${SM_VERSION}: device $sm_src does not exist on this host (it is in the recipe's devices; set [tools.$SM_TOOL] devices in config.toml to use another)" "$SM_EXIT_DEVICE"
done
# Supplementary groups go along, except any group that owns the Docker socket (recorded at
# install time): a container never gets the right to talk to the daemon.
sm_graw=${sm_groups[*]}  # as the kernel lists them (the fast path compares them)
[[ -n $sm_rootless ]] && sm_groups=()
for sm_g in "${sm_groups[@]}"; do
  [[ $sm_g == "$sm_gid" || " ${SM_SOCKET_GIDS[*]} " == *" $sm_g "* ]] || sm_args+=(--group-add "$sm_g")
done
[[ -t 0 && -t 1 ]] && sm_args+=(-t)

# Mounts. sm_dsts holds every destination so that nothing is mounted twice or under a mount
# that already covers it with the same or more rights.
sm_dsts=() sm_modes=() sm_srcs=() sm_pins=()
# -- the refusal rule (its one copy: sandman/shims.py refusal runs this block for `sandman run
# --mount` and config.toml's extra_mounts, given sm_home, sm_socks and sm_psocks) --
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
# -- end of the refusal rule --
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
  local opt= pin m=$3
  [[ -n $sm_complete ]] && m=ro  # completion mode: every mount read-only, the cwd's included
  [[ $m == ro ]] && opt=,readonly
  # what holds src (see sm_real): the cwd's fd, or the pin of the sm_real that resolved src;
  # anything else is resolved (and pinned) again here, and must still resolve to src
  if [[ $1 == "$sm_cwd" && -n $sm_cwdfd ]]; then
    pin=/dev/fd/$sm_cwdfd/.
  elif [[ $1 == "${sm_rp-}" && -n ${sm_pin-} ]]; then
    pin=$sm_pin sm_pinfd=  # taken: sm_real no longer closes it
  else
    local sm_rp sm_pin sm_pinfd=
    sm_real "$1" && [[ $sm_rp == "$1" ]] || sm_die "${SM_TOOL}@${SM_VERSION}: $1 changed while it was checked (a folder on its path was moved or swapped); nothing was run" "$SM_EXIT_MOUNT"
    pin=$sm_pin
  fi
  sm_args+=(--mount "type=bind,\"source=${1//\"/\"\"}\",\"target=${2//\"/\"\"}\"$opt")
  sm_dsts+=("$2") sm_modes+=("$m") sm_srcs+=("$1") sm_pins+=("$pin")
}
sm_mount() {  # realsrc dst mode what: skip when covered (nothing new is seen), refuse, else bind
  sm_covered "$2" "$3" && return
  sm_refused "$1" arg && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $4 (really $1): $sm_why" "$SM_EXIT_MOUNT"
  sm_bind "$1" "$2" "$3"
}
sm_map_path() {  # mount a path given on the command line or in the environment, where it is
  local p=$1 mode=$2 what="$3 $1" t dir tdir why
  [[ -n $sm_complete ]] && mode=ro  # completion mode (a path_env variable): nothing is made
  [[ $p == /* ]] || p=$sm_cwd/$p
  sm_norm "$p"; t=$sm_np
  case $t in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) return 0 ;; esac
  # A socket, FIFO or device is never handed over (one the cwd's mount shows is there already)
  if [[ -S $p || -p $p || -b $p || -c $p ]] && ! sm_covered "$t" ro; then
    why=
    if sm_real "$p"; then
      why=" (really $sm_rp)"
      sm_refused "$sm_rp" arg || sm_why="it is a socket, FIFO or device, not data"
    else
      sm_why="it is a socket, FIFO or device, not data"
    fi
    sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $what$why: $sm_why" "$SM_EXIT_MOUNT"
  fi
  if [[ -d $p ]]; then
    sm_real "$p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve $what" "$SM_EXIT_MOUNT"
    # a folder is mounted whole only when nothing of other users or of the session is in it
    if ! sm_covered "$t" "$mode" && ! sm_refused "$sm_rp" arg && ! sm_whole "$sm_rp" 0; then
      sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $what (really $sm_rp): $sm_why; name a file in it, or use a folder of your own" "$SM_EXIT_MOUNT"
    fi
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
      *)
        sm_covered "$t" "$mode" && return
        if ! sm_refused "$sm_rp" arg; then
          # the folder, unless it is shared or holds sockets: then the file (and sqlite's
          # siblings) in a tmpfs at the folder's place
          if sm_whole "$sm_rp"; then sm_mount "$sm_rp" "$tdir" "$mode" "$what"; else sm_map_alone "$p" "$t" "$mode" "$what"; fi
          return
        fi
        # a folder refused for what it holds (/tmp holding rootless Podman's socket): the
        # same, when the file itself may be mounted
        if [[ $tdir != / ]] && sm_real "$p" && ! sm_refused "$sm_rp" arg; then
          sm_map_alone "$p" "$t" "$mode" "$what"
          return
        fi ;;
    esac
    # the file alone: refused as a folder would be (a folder that resolves into /proc must not
    # get through as one of its files)
    sm_real "$p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve $what" "$SM_EXIT_MOUNT"
    sm_mount "$sm_rp" "$t" "$mode" "$what"
  elif [[ $tdir == / ]]; then
    :  # /CN=x (openssl -subj) names nothing on this host: every top-level folder exists
  elif [[ -d $dir ]]; then  # a file the tool will create
    sm_real "$dir" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve the folder of $what" "$SM_EXIT_MOUNT"
    if sm_refused "$sm_rp" arg; then
      # a folder refused for what it holds (/tmp holding rootless Podman's socket): the file
      # alone in a tmpfs there, when the file itself may be mounted
      why=$sm_why
      sm_refused "${sm_rp%/}/${p##*/}" arg && sm_die "${SM_TOOL}@${SM_VERSION}: cannot map $what: its folder $tdir (really $sm_rp) may not be mounted ($why)" "$SM_EXIT_MOUNT"
      sm_covered "$t" "$mode" || sm_map_alone "$p" "$t" "$mode" "$what"
      return
    fi
    sm_covered "$t" "$mode" && return
    if sm_whole "$sm_rp"; then sm_mount "$sm_rp" "$tdir" "$mode" "$what"; else sm_map_alone "$p" "$t" "$mode" "$what"; fi
  fi  # else: not a path on this host, passed on untouched
}
# -- shared folders (issue 23 item 3): /tmp holds ssh-agent's and X11's sockets, other users'
# files; a folder with a socket, FIFO or device in it holds something of a session, not data --
sm_whole_max=5000
sm_whole() {  # real folder: may it be mounted whole? Not when it is sticky (shared: /tmp,
  # /var/tmp, /dev/shm) or has a socket, FIFO or device node directly in it, dotfiles included
  # (sm_why says which). One builtin glob and a test or two per entry, no fork (5000 entries:
  # about 20 ms); a folder of more than sm_whole_max entries (or $2; 0: no limit) is not looked
  # through and counts as not whole.
  local f n=0 o= max=${2-$sm_whole_max}
  sm_why=
  if [[ -k $1 ]]; then
    sm_why="it is a shared folder (sticky, as /tmp: other users' files and sessions' sockets)"
    return 1
  fi
  shopt -q nullglob || o+=n; shopt -q dotglob || o+=d
  shopt -s nullglob dotglob
  for f in "${1%/}"/*; do
    (( ++n > max && max )) && { sm_why="it holds more than $max entries (not looked through)"; break; }
    [[ -f $f || -d $f ]] && continue
    [[ -S $f || -p $f || -b $f || -c $f ]] && { sm_why="it holds ${f##*/}, a socket, FIFO or device"; break; }
  done
  [[ $o == *n* ]] && shopt -u nullglob; [[ $o == *d* ]] && shopt -u dotglob
  [[ -z $sm_why ]]
}
sm_tmpfs_dsts=() sm_tmpfs_at=() sm_drymade=()
sm_tmpfs() {  # dst mode: an empty tmpfs at dst (once; made read-write when a later path asks)
  local i v
  for i in "${!sm_tmpfs_dsts[@]}"; do
    [[ ${sm_tmpfs_dsts[i]} == "$1" ]] || continue
    v=${sm_args[sm_tmpfs_at[i]]}
    if [[ $2 == rw ]]; then
      case $v in
        *:ro,exec,mode=1777) sm_args[sm_tmpfs_at[i]]=${v%ro,exec,mode=1777}exec,mode=1777 ;;
        *,readonly) sm_args[sm_tmpfs_at[i]]=${v%,readonly} ;;
      esac
    fi
    return
  done
  # mode 1777 as /tmp, exec as the image's own folder; the engine mounts it before the binds
  # beneath it (it orders mounts by depth). --tmpfs cannot say a path with a colon in it.
  v=exec,mode=1777; [[ $2 == ro ]] && v=ro,$v
  sm_tmpfs_dsts+=("$1") sm_tmpfs_at+=($(( ${#sm_args[@]} + 1 )))
  if [[ $1 == *:* ]]; then
    v=tmpfs-mode=1777; [[ $2 == ro ]] && v+=,readonly
    sm_args+=(--mount "type=tmpfs,\"target=${1//\"/\"\"}\",$v")
  else
    sm_args+=(--tmpfs "$1:$v")
  fi
}
sm_map_alone() {  # path target mode what: the path's folder may not be mounted whole. A tmpfs
  # takes its place (the tool creates its siblings there, for the call); the file is bound
  # into it, and so are sqlite's siblings that exist (a hot journal, an unmerged WAL). A file
  # the tool will create is made here first, empty (the umask; noclobber: nothing replaced, no
  # link followed), so that what the tool writes is on the host.
  local p=$1 t=$2 mode=$3 what=$4 tdir=${2%/*} s nc=+C u
  sm_tmpfs "${tdir:-/}" "$mode"
  if [[ ! -e $p && ! -L $p && $mode == rw && -n ${SANDMAN_DRY_RUN-} && ${SANDMAN_DRY_RUN-} != 0 ]]; then
    # a dry run changes nothing: it says what the call would make (and its command lacks
    # that one bind, which needs the file to exist)
    sm_drymade+=("$p")
    return 0
  elif [[ ! -e $p && ! -L $p && $mode == rw ]]; then
    [[ $- == *C* ]] && nc=-C
    set -C
    { : >"$p"; } 2>/dev/null
    set $nc
    [[ -f $p && ! -L $p && -O $p ]] || return 0  # not made: the tool sees an empty folder
  elif [[ ! -e $p ]]; then
    return 0  # read-only: the tool cannot make it, as in a read-only folder
  fi
  # a link in a sticky folder is followed only when it is the user's or the folder's owner's
  # (the kernel's protected_symlinks rule): another user's link is no way to the user's files
  if [[ -L $p && -k ${p%/*}/ ]]; then
    u=$(command -p stat -c %u -- "$p" "${p%/*}/" 2>/dev/null)
    [[ ${u%%$'\n'*} == "$EUID" || ${u%%$'\n'*} == "${u#*$'\n'}" ]] || sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $what: it is a link another user made in a shared folder" "$SM_EXIT_MOUNT"
  fi
  sm_real "$p" || sm_die "${SM_TOOL}@${SM_VERSION}: cannot resolve $what" "$SM_EXIT_MOUNT"
  [[ -f $sm_rp ]] || sm_die "${SM_TOOL}@${SM_VERSION}: will not mount $what (really $sm_rp): not a regular file" "$SM_EXIT_MOUNT"
  sm_mount "$sm_rp" "$t" "$mode" "$what"
  for s in journal wal shm; do
    [[ -f $p-$s && ! -L $p-$s ]] || continue
    sm_real "$p-$s" || continue
    sm_mount "$sm_rp" "$t-$s" "$mode" "$what-$s"
  done
}
# -- end of shared folders --
sm_expand() {  # sm_sp: a declared mount source as a path (~ is the home, relative is the cwd's)
  sm_sp=$1
  [[ $sm_sp == "~" || $sm_sp == "~/"* ]] && sm_sp=${HOME:-/nonexistent}${sm_sp:1}
  [[ $sm_sp == /* ]] || sm_sp=$sm_cwd/$sm_sp
}

# A shared folder (sticky: /tmp, /var/tmp, /dev/shm) as the cwd would hand the tool every
# other session's and user's files there (ssh-agent's and X11's sockets): a test, no fork.
[[ -k $sm_cwd && -z ${SANDMAN_ALLOW_SHARED-} ]] && sm_die "${SM_TOOL}@${SM_VERSION}: will not mount the current directory $sm_cwd: it is a shared folder (sticky, as /tmp: other users' files and sessions' sockets); cd into a folder of your own (cd \"\$(mktemp -d)\"), or set SANDMAN_ALLOW_SHARED=1 to allow" "$SM_EXIT_MOUNT"
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
# The host's proxy settings (HTTP_PROXY, no_proxy...) when the tool has a network: never
# with none; config.toml's proxy_env = false leaves SM_PROXY_ENV empty.
if [[ $SM_NETWORK != none ]]; then
  for sm_v in "${SM_PROXY_ENV[@]}"; do
    [[ -n ${!sm_v+x} ]] && sm_args+=(-e "$sm_v")
  done
fi
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
# A bare name is in the current directory, which is mounted already. (Not the words of a
# completion: they are not arguments to the tool.)
if [[ $SM_PATH_ARGS != off && -z $sm_complete ]]; then
  for sm_a in "$@"; do
    case $sm_a in
      /*) sm_map_path "$sm_a" "$SM_PATH_ARGS" "argument" ;;
      -*=/*) sm_map_path "${sm_a#*=}" "$SM_PATH_ARGS" "argument" ;;
      -*) ;;
      */*) sm_map_path "$sm_a" "$SM_PATH_ARGS" "argument" ;;
    esac
  done
fi

# Completion mode: the image's bash runs sm_complete_eval instead of the tool. It finds the
# command's script where the probe at install found one (sandman/toolfiles.py COMPLETION_DIRS),
# sources it (after the image's bash-completion library, when it has one, as that library's
# loader would), calls the function the script registered for the command (or its compgen
# spec) with COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT (the command's name in place of the
# shim's), and prints COMPREPLY, a NUL after each word. The host keeps only what it checks.
if [[ -n $sm_complete ]]; then
  (( $# )) || exit 0
  sm_complete_eval='c=$1 cw=$2 line=$3 point=$4; shift 4
(( $# > cw )) || exit 0
f=
for d in /usr/share/bash-completion/completions /etc/bash_completion.d; do
  for n in "$c" "$c.bash" "_$c"; do
    [[ -f $d/$n && -r $d/$n ]] && { f=$d/$n; break 2; }
  done
done
[[ -n $f ]] || exit 0
w0=$1; shift
COMP_WORDS=("$c" "$@") COMP_CWORD=$cw COMP_TYPE=9 COMP_KEY=9
lead=${line%%[![:space:]]*}
if [[ -n $w0 && ${line:${#lead}} == "$w0"* ]]; then
  COMP_LINE=$lead$c${line:${#lead}+${#w0}} COMP_POINT=$(( point + ${#c} - ${#w0} ))
else
  COMP_LINE=${COMP_WORDS[*]} COMP_POINT=${#COMP_LINE}
fi
(( COMP_POINT >= 0 && COMP_POINT <= ${#COMP_LINE} )) || COMP_POINT=${#COMP_LINE}
{
  [[ -f /usr/share/bash-completion/bash_completion ]] && . /usr/share/bash-completion/bash_completion
  . "$f"
} </dev/null >/dev/null 2>&1
spec=$(complete -p -- "$c" 2>/dev/null)
COMPREPLY=() cur=${COMP_WORDS[cw]} prev=
(( cw > 0 )) && prev=${COMP_WORDS[cw-1]}
if [[ $spec =~ \ -F\ ([^ ]+)\  ]]; then
  "${BASH_REMATCH[1]}" "$c" "$cur" "$prev" </dev/null >/dev/null 2>&1
elif [[ -n $spec ]]; then
  s=${spec#complete }
  mapfile -t COMPREPLY < <(eval "compgen ${s% *} -- \"\$cur\"" </dev/null 2>/dev/null)
fi
(( ${#COMPREPLY[@]} )) && printf "%s\0" "${COMPREPLY[@]:0:1000}"
exit 0'
  SM_PREFIX=(bash -c "$sm_complete_eval" sandman-complete "$sm_complete" "$SANDMAN_COMPLETE_CWORD" "${SANDMAN_COMPLETE_LINE-}" "${SANDMAN_COMPLETE_POINT:-0}")
  SM_NEEDCMD=0
fi

if [[ $SM_NEEDCMD == 1 && $# -gt 0 ]]; then  # a command whose name differs in the image
  for sm_m in "${SM_RUN_AS[@]}"; do
    [[ $1 == "${sm_m%%=*}" ]] && { set -- "${sm_m#*=}" "${@:2}"; break; }
  done
fi
if [[ $SM_NEEDCMD == 1 && $# -eq 0 ]]; then
  sm_die "${SM_TOOL}-${SM_VERSION} needs a command to run, for example: ${SM_TOOL}-${SM_VERSION} ${SM_COMMANDS[0]:-COMMAND} ARGS (commands: ${SM_COMMANDS[*]:-none declared})" "$SM_EXIT_USAGE"
fi


# A cold container checks, before the tool runs, that each bind mount is the very object the
# shim checked (its pin, see sm_real): the engine mounts by path, and a path can be swapped
# between the check and the mount (issue 19 item 2). One stat here (the only fork of a cold
# call) gives each pin's device and inode; in the container the agent (`pin`, a static binary
# mounted read-only, when it is built for the image's platform) or else the image's sh and
# stat compare each mount point with them and exec the tool, or print one line and exit
# SM_EXIT_MOUNT with nothing run. An image with neither is not checked (docs/security.md).
# sm_pinargs: engine options; sm_pincmd: the words before the command.
sm_pin_cold() {
  local i=0 how= out l d n t
  sm_pinargs=() sm_pincmd=()
  (( ${#sm_pins[@]} )) || return 0
  if [[ -n ${SM_AGENT-} && -x $SM_AGENT && ( -z ${SM_PLATFORM-} || $SM_PLATFORM == "${SM_AGENT_PLATFORM-}" ) ]]; then
    how=agent
  elif [[ ${SM_SHELL-0} == 1 ]]; then
    how=sh
  else
    return 0
  fi
  out=$(PATH=/usr/bin:/bin exec stat -c '%d %i %F' -- "${sm_pins[@]}" 2>/dev/null)  # one fork
  while IFS=' ' read -r d n t; do
    [[ -n ${sm_pins[i]} && $n == [0-9]* ]] || break
    # a folder's fd is a folder; NAME in a pinned folder is never a link (lstat: not followed)
    [[ ${sm_pins[i]} == /dev/fd/*/. && $t != directory ]] && break
    [[ $t == "symbolic link" ]] && break
    sm_pincmd+=("${sm_dsts[i]}" "$d" "$n")
    (( i++ ))
  done <<<"$out"
  (( i == ${#sm_pins[@]} )) || sm_die "${SM_TOOL}@${SM_VERSION}: will not mount ${sm_srcs[i]}: it changed while it was checked (moved, removed or swapped for a link); nothing was run" "$SM_EXIT_MOUNT"
  if [[ $how == agent ]]; then
    sm_pinargs=(--mount "type=bind,\"source=${SM_AGENT//\"/\"\"}\",target=/run/sandman-agent/agent,readonly"
                --entrypoint /run/sandman-agent/agent)
    sm_pincmd=(pin "$SM_TOOL@$SM_VERSION" "$SM_EXIT_MOUNT" "${sm_pincmd[@]}" --)
  else
    sm_pinargs=(--entrypoint /bin/sh)
    sm_pincmd=(-c 'w=$1 c=$2; shift 2; command -v stat >/dev/null 2>&1 || { while [ "$1" != -- ]; do shift 3; done; shift; exec "$@"; }
while [ "$1" != -- ]; do
  [ "$(stat -L -c "%d %i" -- "$1" 2>/dev/null)" = "$2 $3" ] || { echo "sandman: $w: the mount at $1 is not the one that was checked (it was swapped after the check): nothing was run" >&2; exit "$c"; }
  shift 3
done
shift; exec "$@"' sh "$SM_TOOL@$SM_VERSION" "$SM_EXIT_MOUNT" "${sm_pincmd[@]}" --)
  fi
}

if [[ -n ${SANDMAN_DRY_RUN-} && ${SANDMAN_DRY_RUN-} != 0 ]]; then
  sm_pin_cold
  sm_args+=("${sm_pinargs[@]}")
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
      --tmpfs) sm_sum+=("  tmpfs:    ${sm_v%%:*} (empty, for the call: ${sm_v#*:})") ;;
      *) (( sm_i-- )) ;;
    esac
    (( sm_i += 2 ))
  done
  {
    printf 'sandman: dry run of %s@%s (nothing is started); the container would get:\n' "$SM_TOOL" "$SM_VERSION"
    printf '  image:    %s\n' "$SM_IMAGE"
    printf '%s\n' "${sm_sum[@]}"
    for sm_v in "${sm_drymade[@]}"; do
      printf '  creates:  %s (empty, then bound into the tmpfs; not by a dry run)\n' "$sm_v"
    done
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
  printf '%q ' "$SM_DOCKER" run "${sm_run[@]}" "$SM_IMAGE" "${sm_pincmd[@]}" "${SM_EXEC[@]}" "${SM_PREFIX[@]}" "$@"
  printf '\n'
  exit 0
fi

@@WARM@@

sm_pin_cold
for sm_v in "${sm_pins[@]}" "/dev/fd/$sm_cwdfd/"; do  # the engine's client needs none of them
  [[ $sm_v == /dev/fd/[0-9]*/* ]] && sm_v=${sm_v#/dev/fd/} && sm_v=${sm_v%%/*} && exec {sm_v}<&-
done 2>/dev/null
exec "$SM_DOCKER" run "${sm_args[@]}" "${sm_pinargs[@]}" "$SM_IMAGE" "${sm_pincmd[@]}" "${SM_EXEC[@]}" "${SM_PREFIX[@]}" "$@"
