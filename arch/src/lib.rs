//! chitin's ISA layer: for each architecture a seccomp filter meets, its AUDIT_ARCH token, byte
//! order, ENOSYS value, runtime-spec name and syscall table. The tables are generated from pinned
//! kernel tables (see `tables/` and the generator in `gen/`).
//!
//! Five native ISAs (x86_64, aarch64, ppc64le, s390x, sparc64) and the compat ABIs their kernels
//! also run (x86 and x32, arm, s390, sparc), since a filter must decide for every ABI a process
//! could enter the kernel with.

#[rustfmt::skip]
mod tables {
    pub mod aarch64;
    pub mod arm;
    pub mod ppc64le;
    pub mod s390;
    pub mod s390x;
    pub mod sparc;
    pub mod sparc64;
    pub mod x32;
    pub mod x86;
    pub mod x86_64;
}

// <linux/elf-em.h> machine numbers and <linux/audit.h> flags.
const EM_SPARC: u32 = 2;
const EM_386: u32 = 3;
const EM_PPC64: u32 = 21;
const EM_S390: u32 = 22;
const EM_ARM: u32 = 40;
const EM_SPARCV9: u32 = 43;
const EM_X86_64: u32 = 62;
const EM_AARCH64: u32 = 183;
const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
const AUDIT_ARCH_LE: u32 = 0x4000_0000;

/// FNV-1a, 32 bits: the hash of the generated indexes (arch/gen computes it the same way).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// x32 system calls are x86_64's, numbered with this bit set.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
    Ppc64le,
    S390x,
    S390,
    Sparc64,
    Sparc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Arch {
    pub const ALL: [Arch; 10] = [
        Arch::X86_64,
        Arch::X86,
        Arch::X32,
        Arch::Aarch64,
        Arch::Arm,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::S390,
        Arch::Sparc64,
        Arch::Sparc,
    ];

    /// The ISAs chitin is built for and runs on: each a native ABI, the others compat ones.
    pub const HOSTS: [Arch; 5] = [
        Arch::X86_64,
        Arch::Aarch64,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::Sparc64,
    ];

    /// The token in `seccomp_data.arch` for this ABI.
    pub const fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => EM_X86_64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
            Arch::X86 => EM_386 | AUDIT_ARCH_LE,
            Arch::Aarch64 => EM_AARCH64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
            Arch::Arm => EM_ARM | AUDIT_ARCH_LE,
            Arch::Ppc64le => EM_PPC64 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
            Arch::S390x => EM_S390 | AUDIT_ARCH_64BIT,
            Arch::S390 => EM_S390,
            Arch::Sparc64 => EM_SPARCV9 | AUDIT_ARCH_64BIT,
            Arch::Sparc => EM_SPARC,
        }
    }

    pub const fn endian(self) -> Endian {
        match self {
            Arch::S390x | Arch::S390 | Arch::Sparc64 | Arch::Sparc => Endian::Big,
            _ => Endian::Little,
        }
    }

    pub const fn is_64bit(self) -> bool {
        self.audit_arch() & AUDIT_ARCH_64BIT != 0
    }

    /// Whether system call arguments are 32 bits wide in this ABI, so that a filter compares only
    /// their low words. True for x32 too, whose kernel entry is x86_64's (libseccomp and so runc
    /// treat it the same way).
    pub const fn args_are_32bit(self) -> bool {
        matches!(
            self,
            Arch::X86 | Arch::X32 | Arch::Arm | Arch::S390 | Arch::Sparc
        )
    }

    /// ENOSYS as this ABI's errno numbering has it.
    pub const fn enosys(self) -> u32 {
        match self {
            Arch::Sparc64 | Arch::Sparc => 90,
            _ => 38,
        }
    }

    /// The runtime-spec name (`linux.seccomp.architectures`). SCMP_ARCH_SPARC64 and
    /// SCMP_ARCH_SPARC are chitin's own: neither libseccomp nor the spec knows sparc.
    pub const fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
            Arch::Arm => "SCMP_ARCH_ARM",
            Arch::Ppc64le => "SCMP_ARCH_PPC64LE",
            Arch::S390x => "SCMP_ARCH_S390X",
            Arch::S390 => "SCMP_ARCH_S390",
            Arch::Sparc64 => "SCMP_ARCH_SPARC64",
            Arch::Sparc => "SCMP_ARCH_SPARC",
        }
    }

    pub fn from_oci_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.oci_name() == name)
    }

    /// The other ABIs a kernel of this native arch runs, which a filter must also cover.
    pub const fn compat(self) -> &'static [Arch] {
        match self {
            Arch::X86_64 => &[Arch::X86, Arch::X32],
            Arch::Aarch64 => &[Arch::Arm],
            Arch::S390x => &[Arch::S390],
            Arch::Sparc64 => &[Arch::Sparc],
            _ => &[],
        }
    }

    /// The ISA this binary was built for.
    pub const fn native() -> Arch {
        #[cfg(target_arch = "x86_64")]
        return Arch::X86_64;
        #[cfg(target_arch = "aarch64")]
        return Arch::Aarch64;
        #[cfg(all(target_arch = "powerpc64", target_endian = "little"))]
        return Arch::Ppc64le;
        #[cfg(target_arch = "s390x")]
        return Arch::S390x;
        #[cfg(target_arch = "sparc64")]
        return Arch::Sparc64;
    }

    /// Every (name, number) of this ABI, sorted by name.
    pub fn syscalls(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::x86_64::SYSCALLS,
            Arch::X86 => tables::x86::SYSCALLS,
            Arch::X32 => tables::x32::SYSCALLS,
            Arch::Aarch64 => tables::aarch64::SYSCALLS,
            Arch::Arm => tables::arm::SYSCALLS,
            Arch::Ppc64le => tables::ppc64le::SYSCALLS,
            Arch::S390x => tables::s390x::SYSCALLS,
            Arch::S390 => tables::s390::SYSCALLS,
            Arch::Sparc64 => tables::sparc64::SYSCALLS,
            Arch::Sparc => tables::sparc::SYSCALLS,
        }
    }

    pub fn syscall_nr(self, name: &str) -> Option<u32> {
        let (table, index): (&[(&str, u32)], &[u16]) = match self {
            Arch::X86_64 => (tables::x86_64::SYSCALLS, &tables::x86_64::INDEX),
            Arch::X86 => (tables::x86::SYSCALLS, &tables::x86::INDEX),
            Arch::X32 => (tables::x32::SYSCALLS, &tables::x32::INDEX),
            Arch::Aarch64 => (tables::aarch64::SYSCALLS, &tables::aarch64::INDEX),
            Arch::Arm => (tables::arm::SYSCALLS, &tables::arm::INDEX),
            Arch::Ppc64le => (tables::ppc64le::SYSCALLS, &tables::ppc64le::INDEX),
            Arch::S390x => (tables::s390x::SYSCALLS, &tables::s390x::INDEX),
            Arch::S390 => (tables::s390::SYSCALLS, &tables::s390::INDEX),
            Arch::Sparc64 => (tables::sparc64::SYSCALLS, &tables::sparc64::INDEX),
            Arch::Sparc => (tables::sparc::SYSCALLS, &tables::sparc::INDEX),
        };
        let mask = index.len() - 1;
        let mut h = fnv1a(name) as usize & mask;
        loop {
            let i = *index.get(h)?;
            if i == u16::MAX {
                return None;
            }
            let (n, nr) = table[i as usize];
            if n == name {
                return Some(nr);
            }
            h = (h + 1) & mask;
        }
    }

    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        self.syscalls()
            .iter()
            .find(|(_, n)| *n == nr)
            .map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_tokens_match_the_kernel_headers() {
        assert_eq!(Arch::X86_64.audit_arch(), 0xC000_003E);
        assert_eq!(Arch::X86.audit_arch(), 0x4000_0003);
        assert_eq!(Arch::Aarch64.audit_arch(), 0xC000_00B7);
        assert_eq!(Arch::Arm.audit_arch(), 0x4000_0028);
        assert_eq!(Arch::Ppc64le.audit_arch(), 0xC000_0015);
        assert_eq!(Arch::S390x.audit_arch(), 0x8000_0016);
        assert_eq!(Arch::S390.audit_arch(), 0x0000_0016);
        assert_eq!(Arch::Sparc64.audit_arch(), 0x8000_002B);
        assert_eq!(Arch::Sparc.audit_arch(), 0x0000_0002);
    }

    #[test]
    fn known_numbers() {
        // Spot checks against each architecture's unistd.h.
        assert_eq!(Arch::X86_64.syscall_nr("read"), Some(0));
        assert_eq!(Arch::X86_64.syscall_nr("clone3"), Some(435));
        assert_eq!(Arch::X86.syscall_nr("socketcall"), Some(102));
        assert_eq!(Arch::X32.syscall_nr("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(
            Arch::X32.syscall_nr("rt_sigaction"),
            Some(X32_SYSCALL_BIT + 512)
        );
        assert_eq!(Arch::Aarch64.syscall_nr("newfstatat"), Some(79));
        assert_eq!(
            Arch::Aarch64.syscall_nr("fstatat"),
            None,
            "the syscalls crate's mistake"
        );
        assert_eq!(
            Arch::Aarch64.syscall_nr("open"),
            None,
            "arm64 has only openat"
        );
        assert_eq!(Arch::Arm.syscall_nr("cacheflush"), Some(0x0f0002));
        assert_eq!(Arch::Arm.syscall_nr("set_tls"), Some(0x0f0005));
        assert_eq!(Arch::Ppc64le.syscall_nr("clone3"), Some(435));
        assert_eq!(Arch::S390x.syscall_nr("exit"), Some(1));
        assert_eq!(
            Arch::S390x.syscall_nr("lchown"),
            Some(198),
            "s390x lchown is the 32-bit-id one"
        );
        assert_eq!(Arch::S390.syscall_nr("lchown"), Some(16));
        assert_eq!(
            Arch::Sparc64.syscall_nr("clone3"),
            None,
            "sparc has no clone3"
        );
        assert_eq!(Arch::Sparc64.syscall_nr("execve"), Some(59));
        for a in Arch::ALL {
            let t = a.syscalls();
            assert!(t.len() > 250, "{a:?} has {} syscalls", t.len());
            assert!(
                t.windows(2).all(|w| w[0].0 < w[1].0),
                "{a:?} sorted and unique"
            );
            assert_eq!(Arch::from_oci_name(a.oci_name()), Some(a));
        }
    }

    #[test]
    fn generated_tables_are_current() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--manifest-path",
                concat!(env!("CARGO_MANIFEST_DIR"), "/gen/Cargo.toml"),
                "--",
                "--check",
            ])
            .status()
            .expect("cargo run");
        assert!(
            status.success(),
            "arch/src/tables is stale: run `cargo run -p chitin-arch-gen`"
        );
    }
}
