//! Integration tests: real containers, run as root on a busybox rootfs.

mod apparmor;
mod cgroups;
mod clients;
mod compare;
mod devices;
mod differential;
mod errors;
mod escapes;
mod exec;
mod hardened;
mod harness;
mod hooks;
mod idmapped;
mod lifecycle;
mod mount_options;
mod net_devices;
mod process;
mod profiles;
mod reliability;
mod rootfs;
mod rootless;
mod seccomp;
mod seccomp_abi;
mod selinux;
mod support;
mod systemd;
mod terminal;
mod tpm;
mod tty;
mod tuning;

use clients::{ctr, docker, docker_cdi, docker_userns, podman};
use harness::Test;

macro_rules! tests {
    ($($m:ident :: $f:ident),* $(,)?) => {
        &[$(Test { name: concat!(stringify!($m), "::", stringify!($f)), run: $m::$f }),*]
    };
}

fn main() {
    harness::main(tests![
        lifecycle::spec_and_run_print_from_inside,
        lifecycle::spec_namespaces_as_runc,
        lifecycle::create_waits_until_start,
        lifecycle::delete_force_and_kill_all,
        lifecycle::kill_signal_zero_and_real_time,
        lifecycle::run_exit_codes,
        lifecycle::signals_are_forwarded_by_run,
        lifecycle::list_formats,
        lifecycle::features_and_version,
        lifecycle::json_log_on_failure,
        lifecycle::debug_traces_each_step,
        process::user_groups_umask_cwd_env,
        tuning::scheduler_io_priority_personality_memory_policy,
        tuning::real_time_within_the_rt_budget,
        tuning::cpu_affinity_of_init_and_exec,
        tuning::bad_tuning_is_refused_by_field,
        profiles::performance_profile_from_an_annotation,
        profiles::unmet_profile_fails_first,
        profiles::profile_from_a_file_spreads_memory_over_the_nodes,
        profiles::profile_within_the_parent_cgroup_s_cpuset,
        profiles::latency_pinned_within_the_rt_budget,
        process::capabilities_all_five_sets,
        process::capabilities_runc_accepts,
        process::execute_bit_is_the_kernels_to_check,
        process::rlimits_and_oom_score_adj,
        process::hostname_and_domainname,
        process::console_socket_gets_the_pty_master,
        process::pidfd_socket_gets_the_process,
        process::terminal_without_socket_is_refused_when_detached,
        process::preserve_fds_and_listen_fds,
        process::created_init_holds_no_caller_fd,
        rootfs::namespaces_new_and_joined,
        rootfs::user_namespace_mappings,
        rootfs::bind_sources_opened_before_the_user_namespace,
        rootfs::time_namespace_offsets,
        idmapped::idmapped_bind_mounts_map_owners,
        idmapped::ridmap_reaches_submounts,
        idmapped::idmapped_tmpfs,
        idmapped::idmap_refusals_name_the_mount,
        rootless::lifecycle_as_an_ordinary_user,
        rootless::subordinate_ranges_through_newuidmap,
        rootless::delegated_cgroup_takes_the_limits,
        rootless::systemd_driver_through_the_user_manager,
        rootless::rootless_refusals_are_clear,
        rootless::podman_as_the_user,
        rootless::escapes_the_user_s_own_binary_cannot_be_overwritten,
        rootless::escapes_init_is_not_dumpable_at_the_barrier,
        rootless::escapes_no_host_fd_reaches_the_container,
        rootless::escapes_mount_targets_stay_in_the_rootfs,
        rootless::escapes_proc_writes_need_a_real_procfs,
        rootless::escapes_dev_null_symlink_redirects_nothing,
        rootfs::mounts_with_options,
        rootfs::propagation,
        mount_options::every_listed_option_has_its_effect,
        rootfs::symlinked_mount_destination_stays_inside,
        rootfs::readonly_root_masked_and_readonly_paths,
        rootfs::devices_and_dev_layout,
        rootfs::sysctls_apply_in_the_container,
        rootfs::no_pivot,
        rootfs::shared_or_joined_mount_namespace,
        rootfs::clone_without_clone3,
        net_devices::interfaces_move_into_the_container,
        net_devices::a_failed_create_leaves_the_interfaces_as_they_were,
        net_devices::cdi_net_devices_by_annotation,
        hooks::all_phases_in_order,
        hooks::failing_hook_fails_create_and_cleans_up,
        hooks::hook_timeout,
        hooks::late_hook_failures,
        hooks::chatty_hooks,
        process::foreground_terminal,
        errors::bad_configs,
        errors::bad_bundles_and_json,
        errors::ids_and_signals,
        errors::refused_flags,
        errors::unknown_keys_are_warned_of,
        cgroups::resources_reach_the_cgroup_files,
        cgroups::resources_reach_the_cgroup_files_v2,
        cgroups::memory_limit_oom_kills_and_events_reports_it,
        cgroups::cpu_quota_throttles,
        cgroups::relative_cgroups_path,
        cgroups::pids_limit_stops_forks,
        cgroups::pause_freezes_and_resume_thaws,
        cgroups::pause_a_created_container,
        cgroups::update_changes_limits,
        cgroups::update_from_the_merged_resources,
        cgroups::update_per_device_block_io,
        cgroups::intel_rdt_without_resctrl,
        cgroups::ps_lists_the_container,
        cgroups::stats_event,
        cgroups::unsupported_resources_are_refused,
        systemd::scope_follows_the_container,
        systemd::delete_force_stops_the_scope,
        systemd::device_rules_survive_daemon_reload,
        systemd::a_failed_or_crashed_create_does_not_block_the_next,
        systemd::without_systemd_nothing_is_left,
        cgroups::device_rules_v1,
        cgroups::ebpf_device_filter,
        cgroups::v1_only_host,
        cgroups::delete_after_a_killed_create,
        cgroups::delete_removes_sub_cgroups_and_strays,
        cgroups::frozen_or_busy_cgroup,
        process::session_keyring,
        process::rlimit_above_the_runtime_s_own,
        exec::joins_every_namespace_and_the_cgroup,
        exec::flags_and_exit_status,
        exec::process_file_and_flags_as_runc,
        exec::refused_when_not_running,
        exec::seccomp_applies,
        exec::follows_the_saved_config,
        tpm::measured_at_start_and_verified,
        tpm::bad_requests_fail_before_anything_is_made,
        tpm::cdi_specs_are_measured,
        tpm::rootfs_is_measured_when_asked,
        tpm::kernel_tpm_in_the_container_and_measured,
        devices::cdi_devices_reach_the_container,
        devices::bad_cdi_requests_fail_before_anything_is_made,
        devices::enclave_devices_as_the_host_has_them,
        devices::vfio_group_reaches_the_container,
        devices::rdma_device_reaches_the_container,
        devices::rdma_device_in_exclusive_mode,
        exec::terminal,
        seccomp::docker_default_profile,
        seccomp::actions_and_errnos,
        seccomp::notify_listener_reaches_the_agent,
        seccomp::profile_without_close_range,
        seccomp::profiles_read_as_runc_reads_them,
        seccomp_abi::enosys_above_the_profile,
        seccomp_abi::argument_words_in_the_isa_s_byte_order,
        seccomp_abi::compat_abi_is_filtered,
        seccomp_abi::fails_closed_without_filter_support,
        hardened::hardened_blocks_exploit_preconditions,
        hardened::hardened_runs_a_shell_a_compiler_and_a_server,
        hardened::hardened_refuses_what_it_forbids,
        compare::same_view_as_runc,
        compare::same_lifecycle_as_runc,
        differential::generated_bundles,
        differential::client_configs,
        differential::under_systemd,
        differential::events_as_runc_reports_them,
        reliability::parallel_cycles_leak_nothing,
        reliability::racing_commands_on_one_container,
        reliability::soak,
        reliability::killed_at_each_stage_of_create,
        reliability::init_dies,
        reliability::state_dir_unwritable_or_full,
        escapes::proc_self_exe_cannot_be_overwritten,
        escapes::proc_self_exe_cannot_be_overwritten_without_the_mount_api,
        escapes::no_host_fd_reaches_the_container,
        escapes::proc_writes_need_a_real_procfs,
        escapes::dev_null_and_console_symlinks_redirect_nothing,
        escapes::init_is_not_dumpable_until_it_execs,
        escapes::mount_targets_stay_in_the_rootfs_through_a_shared_volume,
        apparmor::refused_without_apparmor,
        apparmor::confines,
        selinux::refused_without_selinux,
        selinux::labels,
        terminal::recvtty_create_and_exec,
        terminal::run_in_a_terminal,
        terminal::piped_stdin_ends_with_eof,
        docker::run_in_the_foreground_with_options,
        docker::seccomp_profiles,
        docker::detached_lifecycle,
        docker::exec_into_a_container,
        docker::interactive_terminal,
        docker::pause_update_top_stats,
        docker::stop_signal_and_sub_cgroups,
        docker_cdi::cdi_device_by_annotation,
        docker_cdi::net_device_by_annotation,
        docker_cdi::hardened_by_annotation,
        docker_userns::userns_remap_and_network_container,
        ctr::run_exec_kill_rm,
        ctr::cdi_device_by_annotation,
        ctr::net_device_by_annotation,
        podman::run_exec_stop_pause_ps,
        podman::read_only_tmpfs_and_a_pod,
        podman::cdi_device_by_annotation,
        podman::net_device_by_annotation,
        podman::hardened_by_annotation,
    ]);
}
