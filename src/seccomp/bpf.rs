//! Classic BPF for seccomp: instructions, and an assembler with symbolic labels that turns
//! conditional jumps too far for their 8-bit offsets into jumps over `ja` trampolines.

/// struct sock_filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

pub const LD_W_ABS: u16 = 0x20;
pub const ALU_AND_K: u16 = 0x54;
pub const JA: u16 = 0x05;
pub const JEQ_K: u16 = 0x15;
pub const JGT_K: u16 = 0x25;
pub const JGE_K: u16 = 0x35;
pub const JSET_K: u16 = 0x45;
pub const RET_K: u16 = 0x06;

/// The kernel's limit on a filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

pub type Label = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jump {
    Next,
    To(Label),
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Ld(u32),
    And(u32),
    /// Conditional jump (JEQ_K, JGT_K, JGE_K, JSET_K) on the accumulator against k.
    Cond(u16, u32, Jump, Jump),
    Ret(u32),
    Mark(Label),
}

#[derive(Default)]
pub struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the seccomp filter needs {0} instructions; the kernel takes at most 4096")]
pub struct TooLong(pub usize);

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }
    pub fn mark(&mut self, l: Label) {
        self.ops.push(Op::Mark(l));
    }
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Resolves labels. A conditional branch whose target is more than 255 instructions away
    /// gets a `ja` right after it (32-bit reach), and the branch goes to that instead.
    pub fn assemble(self) -> Result<Vec<SockFilter>, TooLong> {
        let layout = self.layout();
        let mut out = Vec::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            match *op {
                Op::Mark(_) => {}
                Op::Ld(off) => out.push(insn(LD_W_ABS, 0, 0, off)),
                Op::And(k) => out.push(insn(ALU_AND_K, 0, 0, k)),
                Op::Ret(k) => out.push(insn(RET_K, 0, 0, k)),
                Op::Cond(code, k, t, f) => {
                    let (lt, lf) = (layout.long_t[i], layout.long_f[i]);
                    let here = out.len();
                    let after = here + 1 + usize::from(lt) + usize::from(lf);
                    let dest = |j: Jump| match j {
                        Jump::Next => after,
                        Jump::To(l) => layout.at[l],
                    };
                    // Trampolines sit right after the branch: the true one first.
                    let jt = if lt { 0 } else { dest(t) - (here + 1) };
                    let jf = if lf {
                        usize::from(lt)
                    } else {
                        dest(f) - (here + 1)
                    };
                    out.push(insn(code, jt as u8, jf as u8, k));
                    if lt {
                        out.push(insn(JA, 0, 0, (dest(t) - (here + 2)) as u32));
                    }
                    if lf {
                        let me = out.len();
                        out.push(insn(JA, 0, 0, (dest(f) - (me + 1)) as u32));
                    }
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(TooLong(out.len()));
        }
        Ok(out)
    }

    /// Where each label lands and which branches need a trampoline: recomputed until every
    /// offset fits (a trampoline moves what follows it).
    fn layout(&self) -> Layout {
        let n = self.ops.len();
        let (mut long_t, mut long_f) = (vec![false; n], vec![false; n]);
        let (mut pos, mut at) = (vec![0usize; n], vec![0usize; self.labels]);
        loop {
            let mut p = 0;
            for (i, op) in self.ops.iter().enumerate() {
                pos[i] = p;
                match op {
                    Op::Mark(l) => at[*l] = p,
                    Op::Cond(..) => p += 1 + usize::from(long_t[i]) + usize::from(long_f[i]),
                    _ => p += 1,
                }
            }
            let mut changed = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Cond(_, _, t, f) = op {
                    let after = pos[i] + 1 + usize::from(long_t[i]) + usize::from(long_f[i]);
                    for (target, long) in [(t, &mut long_t[i]), (f, &mut long_f[i])] {
                        if let Jump::To(l) = target {
                            if !*long && at[*l] - after > 255 {
                                *long = true;
                                changed = true;
                            }
                        }
                    }
                }
            }
            if !changed {
                return Layout { long_t, long_f, at };
            }
        }
    }
}

/// The assembler's layout: trampolines after each branch, and label positions.
struct Layout {
    long_t: Vec<bool>,
    long_f: Vec<bool>,
    at: Vec<usize>,
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

#[cfg(any(test, feature = "fuzzing"))]
/// A struct seccomp_data as the kernel fills it for `arch`.
pub fn seccomp_data(arch: chitin_arch::Arch, nr: u32, args: [u64; 6]) -> [u8; 64] {
    use chitin_arch::Endian;
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_ne_bytes());
    d[4..8].copy_from_slice(&arch.audit_arch().to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        // The kernel of the ABI's ISA stores each u64 argument in its own byte order, and the
        // filter loads 32-bit words natively: put each half where that ISA has it, as a word
        // the host (which runs the interpreter) reads the same way.
        let (first, second) = match arch.endian() {
            Endian::Little => (*a as u32, (a >> 32) as u32),
            Endian::Big => ((a >> 32) as u32, *a as u32),
        };
        d[16 + 8 * i..20 + 8 * i].copy_from_slice(&first.to_ne_bytes());
        d[20 + 8 * i..24 + 8 * i].copy_from_slice(&second.to_ne_bytes());
    }
    d
}

/// Runs a seccomp program on one `struct seccomp_data`, as the kernel would (the instructions
/// above, plus those libseccomp emits), for tests and differential checks.
#[cfg(any(test, feature = "fuzzing"))]
pub fn run(prog: &[SockFilter], data: &[u8; 64]) -> u32 {
    let word = |off: u32| {
        u32::from_ne_bytes(
            data[off as usize..off as usize + 4]
                .try_into()
                .expect("4 bytes"),
        )
    };
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut mem = [0u32; 16];
    loop {
        let i = prog[pc];
        pc += 1;
        let src = if i.code & 0x08 != 0 { x } else { i.k };
        match i.code & 0x07 {
            0x00 => match i.code {
                LD_W_ABS => a = word(i.k),
                0x60 => a = mem[i.k as usize],
                0x00 => a = i.k,
                c => panic!("load {c:#x}"),
            },
            0x01 => match i.code {
                0x61 => x = mem[i.k as usize],
                0x01 => x = i.k,
                c => panic!("ldx {c:#x}"),
            },
            0x02 => mem[i.k as usize] = a,
            0x03 => mem[i.k as usize] = x,
            0x04 => {
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x50 => a & src,
                    0x40 => a | src,
                    0x60 => a << src,
                    0x70 => a >> src,
                    0x80 => a.wrapping_neg(),
                    c => panic!("alu {c:#x}"),
                }
            }
            0x05 => {
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc += i.k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    c => panic!("jmp {c:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return if i.code & 0x18 == 0x10 { a } else { i.k },
            0x07 => {
                if i.code & 0xf8 == 0x00 {
                    x = a
                } else {
                    a = x
                }
            }
            _ => unreachable!(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_branches_get_trampolines() {
        let mut asm = Asm::default();
        let far = asm.label();
        asm.push(Op::Ld(0));
        asm.push(Op::Cond(JEQ_K, 7, Jump::To(far), Jump::Next));
        for _ in 0..300 {
            asm.push(Op::Ret(1));
        }
        asm.mark(far);
        asm.push(Op::Ret(2));
        let prog = asm.assemble().unwrap();
        assert_eq!(prog.len(), 304, "one trampoline");
        let mut data = [0u8; 64];
        data[..4].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(run(&prog, &data), 2);
        data[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(run(&prog, &data), 1);
    }
}
