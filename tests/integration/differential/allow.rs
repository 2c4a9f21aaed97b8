//! Where chitin's container may see something other than runc's, and why. Each entry covers the
//! difference lines ("- " runc's, "+ " chitin's) that match its pattern, in the cases it names,
//! on the hosts it names.

/// The host's cgroup layout, which decides some entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Host {
    Hybrid,
    V1,
    V2,
}

pub fn host() -> Host {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let has = |fs: &str| mi.lines().any(|l| l.contains(&format!(" - {fs} ")));
    match (has("cgroup"), has("cgroup2")) {
        (true, true) => Host::Hybrid,
        (true, false) => Host::V1,
        _ => Host::V2,
    }
}

pub struct Allow {
    /// Case names, `*` for any part.
    pub cases: &'static str,
    pub hosts: &'static [Host],
    /// A difference line, `*` for any part, `?` for one character (the side: - or +), `{a,b}`
    /// either word.
    pub line: &'static str,
    pub why: &'static str,
}

const ANY: &[Host] = &[Host::Hybrid, Host::V1, Host::V2];

impl Allow {
    pub fn covers(&self, case: &str, host: Host, line: &str) -> bool {
        self.hosts.contains(&host) && glob(self.cases, case) && glob(self.line, line)
    }
}

const HYBRID: &[Host] = &[Host::Hybrid];

pub const ALLOWED: &[Allow] = &[
    Allow {
        cases: "*",
        hosts: ANY,
        line: "? fd\t0 *",
        why: "runc run in the foreground gives the container pipes of its own for stdio and \
              copies between them and its own (so it can chown them to the container's user); \
              chitin hands the caller's stdio on as they are, never changing their owner",
    },
    Allow {
        cases: "*",
        hosts: &[Host::Hybrid, Host::V1],
        line: "? mount\t/sys/fs/cgroup tmpfs tmpfs *",
        why: "the tmpfs holding the v1 hierarchies: chitin gives it the cgroup mount's flags, ro \
              included; runc leaves it writable (mode 0555, which root with CAP_DAC_OVERRIDE \
              writes through)",
    },
    Allow {
        cases: "*",
        hosts: ANY,
        line: "- status\tSigIgn:\t0000000080000000",
        why: "chitin resets every signal to its default before the execve; runc (Go) leaves \
              signal 32 ignored when its caller ignored it, and an ignored signal stays ignored \
              across execve",
    },
    Allow {
        cases: "*",
        hosts: ANY,
        line: "+ status\tSigIgn:\t0000000000000000",
        why: "the other half of the entry above",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "- domainname\t(none)",
        why: "runc 1.1.5 ignores the domainname field (runc 1.2 sets it); chitin sets it",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "+ domainname\texample.org",
        why: "the other half of the domainname entry",
    },
    Allow {
        cases: "runtime-pinned",
        hosts: ANY,
        line: "- status\tCpus_allowed_list:\t0",
        why: "runc 1.1.5 passes its caller's CPU affinity on to the container (runc 1.2.7 and \
              1.3.1 reset it, as chitin does: since Linux 6.2 an asked-for affinity survives \
              the move into the cpuset)",
    },
    Allow {
        cases: "runtime-pinned",
        hosts: ANY,
        line: "+ status\tCpus_allowed_list:\t*",
        why: "chitin's half of the entry above: every CPU the cpuset allows",
    },
    // runc 1.1.5 predates these fields and ignores them (runc 1.2 has the scheduler and I/O
    // priority, 1.4 personality and memory policy); chitin applies each, as
    // tuning::scheduler_io_priority_personality_memory_policy checks from inside.
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "- sched\t0 0 0",
        why: "runc 1.1.5 ignores process.scheduler (SCHED_BATCH, nice 5 in this case)",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "+ sched\t5 0 3",
        why: "chitin's half of the process.scheduler entry: nice 5, SCHED_BATCH (3)",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "- ionice\tnone: prio 0",
        why: "runc 1.1.5 ignores process.ioPriority (best-effort 6 in this case)",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "+ ionice\tbest-effort: prio 6",
        why: "chitin's half of the process.ioPriority entry",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "? machine\t*",
        why: "runc 1.1.5 ignores linux.personality: under LINUX32 uname -m says the 32-bit \
              machine (i686 on x86_64) for chitin only",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "- mempolicy\tdefault",
        why: "runc 1.1.5 ignores linux.memoryPolicy (MPOL_PREFERRED node 0 in this case)",
    },
    Allow {
        cases: "everything",
        hosts: ANY,
        line: "+ mempolicy\tprefer:0",
        why: "chitin's half of the linux.memoryPolicy entry",
    },
    Allow {
        cases: "*",
        hosts: HYBRID,
        line: "+ mount\t/sys/fs/cgroup/unified cgroup2 cgroup2 *",
        why: "with a cgroup namespace on a hybrid host chitin also mounts the unified hierarchy \
              the host has (systemd in the container looks for it there); runc 1.1 leaves it out",
    },
    Allow {
        cases: "*",
        hosts: HYBRID,
        line: "+ in:/sys/fs/cgroup\t* unified",
        why: "the mount point of the unified hierarchy of the entry above",
    },
    Allow {
        cases: "*",
        hosts: HYBRID,
        line: "+ cgroupfs\tunified",
        why: "the same mount point, as the probe lists /sys/fs/cgroup",
    },
    Allow {
        cases: "*",
        hosts: &[Host::Hybrid, Host::V1],
        line: "? {mount\t/sys/fs/cgroup/misc *,in:/sys/fs/cgroup\td* misc}",
        why: "runc 1.1 predates the misc controller: without a cgroup namespace it binds that \
              hierarchy's root (mode 555); chitin makes the container's cgroup there as in every \
              other hierarchy and binds it",
    },
    Allow {
        cases: "*",
        hosts: &[Host::Hybrid, Host::V1],
        line: "? mount\t/sys/fs/cgroup/systemd cgroup * rw,name=systemd root=/ *",
        why: "the name=systemd hierarchy in a cgroup namespace: runc names its source \"systemd\", \
              chitin \"cgroup\", as for every other hierarchy",
    },
    // runc 1.2 idmaps binds too, as idmapped::idmapped_bind_mounts_map_owners checks of chitin.
    Allow {
        cases: "user-namespace-idmapped-bind",
        hosts: ANY,
        line: "- mount\t/idm * 755 65534:65534 no-write",
        why: "runc 1.1.5 predates idmapped mounts and binds the directory as it is: owned by the \
              host's root, which the user namespace does not map",
    },
    Allow {
        cases: "user-namespace-idmapped-bind",
        hosts: ANY,
        line: "+ mount\t/idm *,idmapped * 755 0:0 writable",
        why: "chitin's half of the idmap entry: the mount is idmapped with the container's maps, \
              and the host's root is the container's",
    },
    Allow {
        cases: "*user*",
        hosts: ANY,
        line: "? *mqueue*",
        why: "in a new user namespace the mqueue root belongs to whoever made the ipc namespace: \
              chitin makes it with the clone, as the container's root (0:0); runc makes it before \
              its gid is mapped (nogroup)",
    },
    Allow {
        cases: "hooks",
        hosts: ANY,
        line: "? hook-*\tstate.ociVersion=*",
        why: "the state's ociVersion is the version of the spec the runtime implements: runc \
              1.1.5's 1.0.2-dev, chitin's 1.2.0",
    },
    Allow {
        cases: "hooks",
        hosts: ANY,
        line: "? hook-poststart\tstate.status=*",
        why: "runc 1.1 gives poststart hooks the status it read before the start (created); the \
              process has been executed by then, so chitin says running",
    },
    Allow {
        cases: "events",
        hosts: HYBRID,
        line: "+ data.hugetlb.*",
        why: "on a hybrid host chitin places the container in the unified hierarchy's hugetlb \
              controller (its only home there) and reports it; runc 1.1 manages no hugetlb there",
    },
    Allow {
        cases: "*",
        hosts: &[Host::V2],
        line: "- mount\t/sys/fs/cgroup cgroup2 cgroup* root=/ *",
        why: "cgroup v2 without a cgroup namespace: runc binds the host's whole hierarchy; \
              chitin binds the container's own cgroup only (with the same flags, the next \
              entry), so the container cannot read other containers' cgroups",
    },
    Allow {
        cases: "*",
        hosts: &[Host::V2],
        line: "+ mount\t/sys/fs/cgroup cgroup2 cgroup2 * root=/{chitin-tests,machine.slice}/*",
        why: "the other half of the entry above (the tests' cgroups, or their systemd scopes)",
    },
    Allow {
        cases: "*",
        hosts: &[Host::V2],
        line: "- cgroupfs\t*",
        why: "the entries above: under runc the container lists the host's top-level cgroups \
              (init.scope, system.slice, ...), under chitin its own cgroup, with none below it",
    },
    Allow {
        cases: "*",
        hosts: ANY,
        line: "? rlimit\tMax open files *",
        why: "no RLIMIT_NOFILE in the config: runc 1.1.5, built with Go 1.19, passes on the \
              soft limit Go raised to the hard one for itself (runc 1.1.10 and later restore the \
              caller's); chitin never changes it",
    },
    Allow {
        cases: "events",
        hosts: &[Host::V2],
        line: "+ data.cpuset.*s[]\tnumber",
        why: "on cgroup v2 runc 1.1 leaves the cpuset stats empty; chitin also gives the cpus \
              and mems in effect",
    },
    Allow {
        cases: "mount-options",
        hosts: ANY,
        line: "? mount\t/m/r{dev,diratime,exec,rw,suid,symfollow,relatime} *",
        why: "a recursive option that undoes an earlier one (rnodev then rdev): chitin applies \
              them in order, the last one winning as with mount(8); runc 1.1.5 asks \
              mount_setattr to both set and clear the attribute, and setting wins (runc 1.4.1 \
              fixed the atime ones)",
    },
    Allow {
        cases: "mount-options",
        hosts: ANY,
        line: "? mount\t/m/relatime tmpfs *",
        why: "relatime after noatime: chitin's relatime replaces the earlier atime mode; runc \
              1.1.5 adds MS_RELATIME to MS_NOATIME, and the kernel keeps noatime",
    },
];

/// Cases known to differ until the fix the entry names lands; the test fails when such a case
/// becomes equal, so the entry cannot outlive its fix.
pub struct Pending {
    pub cases: &'static str,
    pub why: &'static str,
}

impl Pending {
    pub fn case_matches(&self, case: &str) -> bool {
        glob(self.cases, case)
    }
}

pub const PENDING: &[Pending] = &[];

/// `*` matches any run of characters, `?` any one, `{a,b}` either of the words; everything else
/// matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut p = pattern.chars();
    match p.next() {
        None => text.is_empty(),
        Some('{') => {
            let (words, rest) = p.as_str().split_once('}').expect("a } after {");
            words.split(',').any(|w| glob(&format!("{w}{rest}"), text))
        }
        Some('*') => {
            let rest = p.as_str();
            text.char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .any(|i| glob(rest, &text[i..]))
        }
        Some(c) => {
            let mut t = text.chars();
            t.next().is_some_and(|d| c == '?' || c == d) && glob(p.as_str(), t.as_str())
        }
    }
}
