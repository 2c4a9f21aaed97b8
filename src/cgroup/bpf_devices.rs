//! The devices cgroup on v2: an eBPF program of type CGROUP_DEVICE, attached to the container's
//! cgroup. It checks the rules from the last to the first and the first that matches decides, as
//! later v1 rules override earlier ones; a request that no rule matches is allowed, as in a v1
//! devices cgroup, which inherits allow-all (configs start with "deny all").

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::plan::DeviceRule;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    // struct bpf_insn's `dst_reg:4, src_reg:4` bitfields: the first takes the low nibble on a
    // little-endian ISA and the high one on a big-endian one (s390x's verifier read r2 for r1).
    let regs = if cfg!(target_endian = "big") {
        (dst << 4) | src
    } else {
        (src << 4) | dst
    };
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

impl Insn {
    /// The destination and source registers, as the kernel reads them.
    #[cfg(test)]
    fn dst_src(self) -> (usize, usize) {
        let (first, second) = ((self.regs & 0xf) as usize, (self.regs >> 4) as usize);
        if cfg!(target_endian = "big") {
            (second, first)
        } else {
            (first, second)
        }
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
// access_type = access << 16 | type
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// Builds the program for `rules`. Registers: r2 type, r3 access, r4 major, r5 minor.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // (instruction, jumps to the next rule when its condition holds)
        let mut block: Vec<(Insn, bool)> = Vec::new();
        match rule.kind {
            'c' => block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR), true)),
            'b' => block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            _ => {}
        }
        let acc = access_bits(&rule.access);
        if acc != ACC_MKNOD | ACC_READ | ACC_WRITE {
            block.push((insn(ALU64_MOV_X, 6, 3, 0, 0), false));
            if rule.allow {
                // An allow rule covers a request only if it grants every access asked for.
                block.push((insn(ALU64_AND_K, 6, 0, 0, !acc & 7), false));
                block.push((insn(JMP_JNE_K, 6, 0, 0, 0), true));
            } else {
                // A deny rule applies as soon as it denies any of them.
                block.push((insn(ALU64_AND_K, 6, 0, 0, acc), false));
                block.push((insn(JMP_JEQ_K, 6, 0, 0, 0), true));
            }
        }
        if let Some(m) = rule.major.filter(|m| *m >= 0) {
            block.push((insn(JMP_JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = rule.minor.filter(|m| *m >= 0) {
            block.push((insn(JMP_JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)), false));
        block.push((insn(JMP_EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        let unconditional = !block.iter().any(|(_, jumps)| *jumps);
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
        // A rule that matches everything decides everything: what follows would never run, and
        // the verifier refuses unreachable instructions.
        if unconditional {
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &[u8]) -> io::Result<i64> {
    // SAFETY: `attr` is a zero-padded union bpf_attr of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Loads the program and attaches it to the cgroup directory `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> io::Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;

    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    // union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size,
    // log_buf.
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    put(&mut attr, 4, &(insns.len() as u32).to_ne_bytes());
    put(&mut attr, 8, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut attr, 24, &1u32.to_ne_bytes());
    put(&mut attr, 28, &(log.len() as u32).to_ne_bytes());
    put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_ne_bytes());
    let prog = bpf(BPF_PROG_LOAD, &attr).map_err(|e| {
        let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)])
            .trim()
            .to_owned();
        if text.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{e}: verifier: {text}"))
        }
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new fd.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
    let cg = std::fs::File::open(dir)?;
    // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &(cg.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 4, &(prog.as_raw_fd() as u32).to_ne_bytes());
    put(&mut attr, 8, &BPF_CGROUP_DEVICE.to_ne_bytes());
    put(&mut attr, 12, &BPF_F_ALLOW_MULTI.to_ne_bytes());
    bpf(BPF_PROG_ATTACH, &attr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `r2 = *(u32 *)(r1 + 0)`'s register byte, as C lays out `dst_reg:4, src_reg:4`.
    #[test]
    fn register_nibbles_follow_the_byte_order() {
        let i = insn(LDX_MEM_W, 2, 1, 0, 0);
        let want = if cfg!(target_endian = "big") {
            0x21
        } else {
            0x12
        };
        assert_eq!(i.regs, want);
        assert_eq!(i.dst_src(), (2, 1));
    }

    /// Runs the program on one request, as the kernel would (only the instructions built above).
    fn run(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = i.dst_src();
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = i64::from(ctx[i.off as usize / 4]),
                ALU64_AND_K => r[dst] &= i64::from(i.imm),
                ALU64_RSH_K => r[dst] = ((r[dst] as u64) >> i.imm) as i64,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = i64::from(i.imm),
                JMP_JNE_K if r[dst] != i64::from(i.imm) => pc += i.off as usize,
                JMP_JEQ_K if r[dst] == i64::from(i.imm) => pc += i.off as usize,
                JMP_JNE_K | JMP_JEQ_K => {}
                JMP_EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    use DeviceRule as R;

    fn rule(a: bool, k: char, ma: Option<i64>, mi: Option<i64>, acc: &str) -> DeviceRule {
        R::of(a, k, ma, mi, acc)
    }

    #[test]
    fn later_rules_win_and_deny_all_closes_the_rest() {
        let rules = vec![
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(1), Some(5), "r"),
            rule(true, 'c', None, None, "m"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "null is readable");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "the last rule denies writing it"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 5), 0, "zero is read-only");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 99, 1),
            1,
            "mknod of any char device"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 1), 0, "/dev/mem is denied");
        assert_eq!(
            run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0),
            0,
            "block devices are denied"
        );
        assert_eq!(
            run(&program(&[]), DEV_BLOCK, ACC_READ, 8, 0),
            1,
            "no rules: allowed"
        );
    }
}
