# What a container sees, as lines "SECTION<TAB>VALUE"; the differential test compares the lines
# two runtimes' containers print for the same bundle. Busybox sh only. Nothing is written but
# empty files made and removed again to learn whether a mount takes writes.
p() { printf '%s\t%s\n' "$1" "$2"; }
each() { while IFS= read -r l; do p "$1" "$l"; done; }

env | sort | each env
p id "$(id)"
p umask "$(umask)"
p cwd "$(pwd)"
p hostname "$(hostname)"
p domainname "$(cat /proc/sys/kernel/domainname)"
grep -E '^(Cap|NoNewPrivs|Seccomp|Seccomp_filters|Uid|Gid|Groups|SigBlk|SigIgn|Speculation|Cpus_allowed_list|Mems_allowed_list)' /proc/self/status | each status
# Scheduling (nice, rt priority, policy), I/O priority, personality and NUMA memory policy.
p sched "$(awk '{print $19, $40, $41}' /proc/self/stat)"
p ionice "$(ionice)"
p machine "$(uname -m)"
p mempolicy "$(head -n 1 /proc/self/numa_maps 2>/dev/null | cut -d' ' -f2)"
p oom_score_adj "$(cat /proc/self/oom_score_adj)"
tail -n +2 /proc/self/limits | each rlimit

# Mounts: target, type, source, per-mount and superblock options, propagation without peer
# numbers, the root's mode and owner, and whether a file can be made in it (or a file mount
# opened for writing).
while read -r _ _ _ root mp opts rest; do
  rest=" $rest"
  prop=$(echo ${rest%% - *} | sed -E 's/:[0-9]+//g')
  set -- ${rest#* - }
  mp=$(printf "$mp")
  if [ -d "$mp" ]; then
    t="$mp/.probe-$$"
    if { true > "$t"; } 2>/dev/null; then rm -f "$t"; w=writable; else w=no-write; fi
  elif { true >> "$mp"; } 2>/dev/null; then w=writable; else w=no-write; fi
  p mount "$mp $1 $2 $opts $3 root=$root prop=[$prop] $(stat -c '%a %u:%g' "$mp") $w"
  # What a tmpfs holds (copied up or made by the runtime), but /dev's, listed below, and the
  # rootfs's (a tmpfs in the VM).
  if [ "$1" = tmpfs ] && [ -d "$mp" ] && [ "$mp" != /dev ] && [ "$mp" != / ]; then
    ls -lan "$mp" | awk 'NR > 1 && $NF != "." && $NF != ".." {print $1, $3, $4, $5, $NF}' | each "in:$mp"
  fi
done < /proc/self/mountinfo

# The cgroup filesystem's top level: on v1 a hierarchy per directory, and the links to
# co-mounted ones ("cpu -> cpu,cpuacct"); on v2 the cgroups below the one shown.
for f in /sys/fs/cgroup/*; do
  if [ -L "$f" ]; then p cgroupfs "${f##*/} -> $(readlink "$f")"
  elif [ -d "$f" ]; then p cgroupfs "${f##*/}"; fi
done

# Devices and links under /dev.
find /dev -xdev | sort | while read -r f; do
  if [ -L "$f" ]; then p dev "$f -> $(readlink "$f")"
  else p dev "$(stat -c '%n %F %t:%T %a %u:%g' "$f")"; fi
done
# Which character devices the device cgroup lets the container open (read-only; nothing read).
find /dev -xdev -type c | sort | while read -r f; do
  case "$f" in *watchdog*) continue ;; esac
  if err=$( { true < "$f"; } 2>&1 ); then p open "$f ok"; else p open "$f ${err##*: }"; fi
done
for d in /dev/pts /dev/shm /dev/mqueue; do [ -d "$d" ] && ls -la "$d" | tail -n +2 | awk '{print $1, $3, $4, $NF}' | each "ls$d"; done

# The console, when there is one.
if tty -s; then p tty "$(tty)"; stty -a | tr ';' '\n' | sed 's/^ *//' | each termios; fi

# Network interfaces and whether each is up (IFF_UP is bit 0 of flags).
for n in /sys/class/net/*; do
  [ -e "$n" ] && p net "${n##*/} flags=$(cat "$n/flags") mtu=$(cat "$n/mtu")"
done

# Which cgroup files and which /proc and /sys files can be opened for writing (nothing written).
for f in $(find /sys/fs/cgroup /proc/sys /sys/kernel /sys/fs /sys/power /sys/module/*/parameters -maxdepth 3 -type f 2>/dev/null | sort) /proc/sysrq-trigger /proc/kcore /proc/timer_list /proc/keys /proc/acpi /proc/scsi; do
  if [ -e "$f" ] && { true >> "$f"; } 2>/dev/null; then p writable "$f"; fi
done
for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/latency_stats /sys/firmware; do
  if [ -e "$f" ]; then p visible "$f $(stat -c '%F %s' "$f")"; else p visible "$f absent"; fi
done

# May a nested user namespace mount a fresh procfs (it may not when every procfs the container
# can see is partly covered: the kernel's mount_too_revealing)?
p nested-proc "$(unshare -U -r -m -p -f sh -c 'mount -t proc proc /proc && echo mounted' 2>&1)"

# Open fds of this shell, pipe and socket inode numbers left out.
ls -l /proc/self/fd | awk 'NF == 11 && $11 !~ /^\/proc\// {print $9, $11}' | sed -E 's/\[[0-9]+\]//' | each fd
exit 7
