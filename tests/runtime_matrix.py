"""Which runtime tests run on which engine and in which mode, and why: the matrix by reason.

A promise is worth proving on an engine, or in a mode, only where that engine or mode runs code
of its own for it. Everything the shim decides before it reaches the engine (refusals, missing
data, a broken config, sandman's reserved exit codes, the locale it computes) is the same bash
whichever engine or mode follows, so those tests run once: Docker, cold. What differs:

- engine: the engine parses the flags (``--mount`` CSV, ``--userns``, the network), relays
  the streams, signals and exit status, and Podman's cold calls go through the image's sh.
- warm (``docker exec`` into a kept container): the call's argv, env, workdir, user, streams,
  signals (the signals FIFO of shims/warm.bash) and exit status travel through `exec`.
- agent: the same kept container, but the static agent (shims/agent.c) carries argv, env, cwd,
  the descriptors, signals and the status itself.
warm and agent share the kept container's creation (its mounts, user, groups, network, caps):
a promise about the container itself runs cold and agent (agent being the mode users get).

Every function in a ``test_runtime_*`` module that takes ``kit`` or ``mode``, and every other
integration test that takes ``mode``, has an entry here; tests/integration/conftest.py
parametrizes from it, and tests/unit/test_runtime_matrix.py fails when one is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER = ("docker",)
BOTH = ("docker", "podman")
COLD = ("cold",)
CREATION = ("cold", "agent")  # the kept container is made by one code path for warm and agent
ALL = ("cold", "warm", "agent")


@dataclass(frozen=True)
class Reach:
    engines: tuple[str, ...]
    modes: tuple[str, ...]  # () for a test that takes no `mode`
    why: str


_STREAMS = "each engine and each mode relays stdin/stdout/stderr with its own code"
_BEFORE = "decided by the shim before it reaches the engine or the warm section"
_MOUNTS = "the engine parses the --mount flags; the kept container is created once for warm and agent"

MATRIX: dict[str, Reach] = {
    # Issue 22: the first warm call (a container's start) costs what it must and no more
    "test_runtime_warm_default.py::test_files_outside_the_mounts_outlive_a_warm_call_but_never_a_cold_one": Reach(
        DOCKER, (), "the kept container's own filesystem lives as long as it does, on either engine: "
        "the measure of why cold stays the default"),
    "test_runtime_warm_start.py::test_a_warm_start_runs_the_engine_to_start_it_and_nothing_else": Reach(
        BOTH, ("agent",), "each engine's start: Podman writes the pid itself, Docker is asked"),
    # Promise 4: arguments
    "test_runtime_argv.py::test_generated_argv_round_trips_through_real_container": Reach(
        BOTH, ALL, "argv travels through `run`, `exec` or the agent, and Podman's sh wrapper"),
    "test_runtime_argv.py::test_path_arguments_with_odd_names_are_mounted_and_passed_verbatim": Reach(
        BOTH, CREATION, _MOUNTS),
    # Promise 3: bytes
    "test_runtime_bytes.py::test_16_mib_of_random_bytes_round_trip": Reach(BOTH, ALL, _STREAMS),
    "test_runtime_bytes.py::test_the_tool_gets_its_three_streams_and_no_other_descriptor": Reach(
        BOTH, ALL, "the engine's exec, `docker exec` and the agent each hand the tool its descriptors"),
    "test_runtime_bytes.py::test_every_byte_value_and_no_cr_on_pipes": Reach(BOTH, ALL, _STREAMS),
    "test_runtime_bytes.py::test_stdout_and_stderr_stay_separate": Reach(BOTH, ALL, _STREAMS),
    "test_runtime_bytes.py::test_tty_only_when_stdin_and_stdout_are_terminals": Reach(
        BOTH, ALL, "-t for run and exec, the agent's pty and relays, on each engine"),
    # Promise 8: the build cache (no mode: sandman builds, then runs cold)
    "test_runtime_concurrency.py::test_eight_parallel_first_runs_build_once": Reach(
        BOTH, (), "Podman builds with `podman build` as a child, Docker through its API"),
    "test_runtime_concurrency.py::test_failed_build_keeps_the_good_image_and_leaves_nothing": Reach(
        BOTH, (), "each engine's build leaves its own kind of intermediate containers"),
    "test_runtime_concurrency.py::test_interrupted_build_keeps_the_good_image_and_leaves_nothing": Reach(
        BOTH, (), "an interrupted Podman build is stopped by sandman, a Docker one by the daemon"),
    # Configuration
    "test_runtime_config.py::test_config_moves_mounts_adds_mounts_and_env": Reach(
        DOCKER, CREATION, "config.toml becomes the shim's values (Python); the mounts it adds are "
        "flags like any other (their parsing runs on both engines in test_runtime_paths)"),
    "test_runtime_config.py::test_broken_config_stops_the_shim_with_one_line": Reach(
        DOCKER, COLD, _BEFORE + " (the refresh runs first)"),
    "test_runtime_config.py::test_sandman_run_with_extra_mounts": Reach(
        BOTH, (), "`sandman run` starts the container through each engine's own client"),
    # The environment
    "test_runtime_env.py::test_nothing_but_the_list_leaks_in": Reach(
        BOTH, ALL, "-e of run and exec, the agent's env list; Podman adds its own variables"),
    "test_runtime_env.py::test_timezone_follows_the_host": Reach(
        DOCKER, ALL, "TZ crosses per call (run, exec, agent); the zoneinfo mount is a flag like "
        "any other"),
    "test_runtime_env.py::test_missing_host_locale_falls_back_without_warnings": Reach(
        DOCKER, ("cold", "agent"), "the shim computes the fallback; the agent carries the "
        "variables itself (exec gets them as -e, as run does)"),
    "test_runtime_env.py::test_legacy_tools_with_an_unknown_host_locale": Reach(
        DOCKER, COLD, "the images' own locales; the transport per mode is the test above's"),
    # Promise 1, sandman's own codes
    "test_runtime_errors.py::test_shim_daemon_unreachable_is_115": Reach(
        BOTH, COLD, "each engine's socket rule; " + _BEFORE),
    "test_runtime_errors.py::test_cli_daemon_unreachable_is_115": Reach(
        BOTH, (), "Docker's daemon and Podman's service fail differently"),
    "test_runtime_errors.py::test_socket_permission_denied_is_116": Reach(
        BOTH, COLD, "each engine's socket rule; " + _BEFORE),
    "test_runtime_errors.py::test_missing_image": Reach(
        BOTH, (), "each engine names a missing image itself"),
    "test_runtime_errors.py::test_malformed_recipes_are_112_with_file_and_line": Reach(
        DOCKER, (), "the recipe is refused before any engine is asked"),
    "test_runtime_errors.py::test_bad_names_and_specs": Reach(
        DOCKER, (), "the name is refused before any engine is asked"),
    "test_runtime_errors.py::test_build_failure_is_114_and_unreadable_kits_113": Reach(
        BOTH, (), "each engine reports a failed build step its own way"),
    "test_runtime_errors.py::test_exit_code_table_is_printed_and_distinct": Reach(
        DOCKER, (), "a table of sandman's own"),
    # Promise 1, the tool's codes
    "test_runtime_exit.py::test_tool_exit_status_passes_through": Reach(
        BOTH, ALL, "run, exec and the agent each return the status their own way"),
    "test_runtime_exit.py::test_death_by_signal_is_128_plus_n": Reach(
        BOTH, ALL, "run, exec and the agent each turn a signal death into 128+N"),
    "test_runtime_exit.py::test_docker_codes_for_commands_that_cannot_run": Reach(
        BOTH, ALL, "Docker's init, Podman's catatonit behind sh, exec's and the agent's own 126/127"),
    # Promise 6
    "test_runtime_ownership.py::test_files_created_belong_to_the_invoking_user": Reach(
        BOTH, ALL, "--user of run, -u of exec, the agent's own uid; Podman's keep-id"),
    "test_runtime_ownership.py::test_tools_that_look_up_their_user_still_work": Reach(
        BOTH, CREATION, "the passwd mounts are made with the container; Podman's keep-id"),
    # Promise 5
    "test_runtime_paths.py::test_cwd_is_the_same_path_even_with_odd_characters": Reach(
        BOTH, ALL, "--workdir of run, -w of exec, the agent's chdir; the engine parses the mount"),
    "test_runtime_paths.py::test_absolute_path_arguments_are_mounted_read_only": Reach(
        BOTH, CREATION, _MOUNTS),
    "test_runtime_paths.py::test_path_env_variables_are_mounted_with_their_mode": Reach(
        DOCKER, CREATION, "the same mount flags as path arguments (both engines above)"),
    "test_runtime_paths.py::test_refusals_name_the_path_and_exit_118": Reach(DOCKER, COLD, _BEFORE),
    "test_runtime_paths.py::test_a_folder_made_again_at_the_same_path_gets_a_new_kept_container": Reach(
        BOTH, ("agent",), "the shim checks a kept container's mounts through its /proc root, which "
        "each engine sets up its own way; warm and agent find containers by one code path"),
    "test_runtime_paths.py::test_missing_data_source_fails_before_any_container": Reach(
        DOCKER, COLD, _BEFORE),
    # Promise 9
    "test_runtime_privileges.py::test_running_container_has_least_privilege": Reach(
        BOTH, CREATION, "each engine applies the security flags; the kept container has its own "
        "creation code"),
    "test_runtime_privileges.py::test_network_only_when_the_recipe_asks": Reach(
        BOTH, CREATION, "rootless Podman's network is slirp4netns; the kept container's is its own"),
    "test_runtime_privileges.py::test_non_root_user_runs_as_itself": Reach(
        BOTH, CREATION, "the user and Podman's keep-id are set when the container is created"),
    # Promise 7
    "test_runtime_readonly.py::test_declared_read_only_mount_stays_untouched": Reach(
        BOTH, CREATION, _MOUNTS),
    "test_runtime_readonly.py::test_read_only_path_argument_stays_untouched_for_another_user": Reach(
        BOTH, CREATION, _MOUNTS),
    # Promise 2
    "test_fast_path.py::test_a_repeated_warm_call_takes_the_route": Reach(
        ("docker",), (), "the route's checks are the client's, the same for both engines"),
    "test_fast_path.py::test_any_change_the_runtime_would_see_leaves_the_route": Reach(
        ("docker",), (), "the route's checks are the client's, the same for both engines"),
    "test_fast_path.py::test_a_variable_the_environment_lacks_keeps_the_route": Reach(
        ("docker",), (), "the route's checks are the client's, the same for both engines"),
    "test_fast_path.py::test_a_folder_swapped_in_at_the_same_path_leaves_the_route": Reach(
        ("docker",), (), "the route's checks are the client's, the same for both engines"),
    "test_runtime_signals.py::test_signal_reaches_the_tool": Reach(
        BOTH, ALL, "the engine's signal proxy, exec's signals FIFO, the agent's forwarding"),
    "test_runtime_signals.py::test_untrapped_term_kills_the_tool_with_143": Reach(
        BOTH, ALL, "the engine's signal proxy, exec's signals FIFO, the agent's forwarding"),
    "test_runtime_signals.py::test_ctrl_c_on_a_terminal_reaches_the_tool": Reach(
        BOTH, ALL, "a terminal's ^C through run -t, exec -t and the agent's client"),
    "test_runtime_signals.py::test_sigkilled_shim_leaves_no_container_within_30s": Reach(
        BOTH, ALL, "the reaper removes a cold container; a warm call's tool dies with its client"),
    "test_runtime_signals.py::test_reaper_leaves_when_idle_and_the_next_shim_starts_another": Reach(
        BOTH, (), "the reaper asks each engine for its containers"),
    # Promise 9/10, outside the fidelity modules
    "test_security_mounts.py::test_docker_group_never_reaches_the_container": Reach(
        DOCKER, CREATION, "the groups are set when the container is created (rootless Podman "
        "maps no supplementary group at all)"),
    "test_security_mounts.py::test_relative_arguments_leaving_the_cwd_work_as_on_the_host": Reach(
        DOCKER, CREATION, "the shim maps the folders; the mounts are made with the container"),
    # Promise 14 and the warm agent against its tool (issue 19)
    "test_security_agent.py::test_a_leftover_cannot_read_the_users_terminal": Reach(
        BOTH, CREATION, "run -t's pty vs the agent's pty relay; the container's end vs the "
        "agent's per-call subreaper"),
    "test_security_agent.py::test_a_finished_call_leaves_no_process_behind": Reach(
        BOTH, ALL, "the container's end (cold), the agent's `reap` under `docker exec` (warm) and "
        "the agent's per-call subreaper (agent)"),
    "test_security_agent.py::test_the_pty_follows_the_terminals_size": Reach(
        DOCKER, CREATION, "the agent's own pty relay (no engine in it) against run -t's"),
    "test_security_agent.py::test_links_planted_in_calls_are_never_followed": Reach(
        DOCKER, ("warm", "agent"), "the shim's call file (both warm paths write it) and the "
        "reader in Python are the same on both engines"),
    # Promise 10: a source swapped between the check and the mount (issue 19 item 2)
    "test_security_swap.py::test_a_folder_swapped_after_the_check_is_never_mounted": Reach(
        BOTH, CREATION, "each engine's runtime mounts by path (the race is its); the check runs "
        "in the cold container (agent `pin`, or sh) and on a kept container's start"),
    "test_security_swap.py::test_without_the_agent_the_images_sh_checks_the_mount": Reach(
        BOTH, COLD, "the fallback check is the image's sh in a cold container (no kept "
        "container starts without the agent); Podman's cold path wraps it in its own sh"),
    "test_security_swap.py::test_the_issues_swap_loop_never_shows_the_home": Reach(
        DOCKER, (), "the replay of the report under a real race; the per-kind test covers both "
        "engines deterministically"),
    # Promise 9: sockets in an argument's folder (issue 23 item 3)
    "test_security_sockets.py::test_a_file_in_tmp_never_brings_the_ssh_agent_along": Reach(
        BOTH, CREATION, "a tmpfs with binds beneath it: each engine orders the mounts itself, "
        "and the kept container is created with them"),
    "test_security_sockets.py::test_a_socket_under_the_runtime_folder_is_refused": Reach(
        DOCKER, (), _BEFORE),
    "test_security_sockets.py::test_a_socket_fifo_or_device_argument_is_refused": Reach(
        DOCKER, (), _BEFORE + " (the file-alone mount shape is the test above's, on both)"),
    "test_security_sockets.py::test_sqlite3_writes_a_database_in_tmp": Reach(
        DOCKER, (), "sqlite3's own journal and WAL files; the mount shape is the ssh-agent test's"),
    "test_security_sockets.py::test_an_unmerged_wal_next_to_a_database_in_tmp_is_seen": Reach(
        DOCKER, (), "which siblings are bound is " + _BEFORE),
    "test_security_sockets.py::test_a_new_file_in_tmp_is_made_by_the_shim_and_never_replaces_one": Reach(
        DOCKER, (), "the shim makes the file before the engine runs"),
    "test_security_sockets.py::test_a_shared_folder_as_the_cwd_is_refused_unless_allowed": Reach(
        DOCKER, (), _BEFORE),
    "test_security_sockets.py::test_a_dry_run_makes_no_file_in_a_shared_folder": Reach(
        DOCKER, (), "a dry run never reaches an engine"),
}


def entry(module: str, function: str) -> Reach | None:
    return MATRIX.get(f"{module}::{function}")
