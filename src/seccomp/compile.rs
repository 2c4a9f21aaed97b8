//! Profile to BPF. The program checks the ABI token, then per ABI walks a binary decision tree
//! over the syscall numbers the profile names, checks the arguments of conditional rules (64-bit
//! values as two 32-bit words in the ABI's byte order), and returns the action. A syscall newer
//! than every one the profile names gets ENOSYS rather than the default action, so that a libc
//! that tries a new call falls back to an old one (what runc does); s390's multiplexing call 0
//! too.

use chitin_arch::{Arch, Endian, X32_SYSCALL_BIT};

use super::bpf::{Asm, JEQ_K, JGE_K, JGT_K, JSET_K, Jump, Label, Op, SockFilter};
use super::{Action, ArgCmp, CmpOp, Profile, Rule, SeccompError};

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// What a filter returns for an ABI it was not built for: libseccomp's default bad-arch action.
pub const BAD_ARCH: Action = Action::KillThread;

pub fn compile(p: &Profile) -> Result<Vec<SockFilter>, SeccompError> {
    compile_with(p, true)
}

/// `enosys`: whether syscalls above the profile's highest get ENOSYS (off only to compare with
/// libseccomp, which has no such stub).
pub fn compile_with(p: &Profile, enosys: bool) -> Result<Vec<SockFilter>, SeccompError> {
    let mut asm = Asm::default();
    // x86_64 and x32 share a token and differ by a bit of the syscall number.
    let mut tokens: Vec<(u32, Vec<Arch>)> = Vec::new();
    for a in &p.archs {
        match tokens.iter_mut().find(|(t, _)| *t == a.audit_arch()) {
            Some((_, v)) => v.push(*a),
            None => tokens.push((a.audit_arch(), vec![*a])),
        }
    }
    let labels: Vec<Label> = tokens.iter().map(|_| asm.label()).collect();
    asm.push(Op::Ld(OFF_ARCH));
    for ((token, _), l) in tokens.iter().zip(&labels) {
        asm.push(Op::Cond(JEQ_K, *token, Jump::To(*l), Jump::Next));
    }
    asm.push(Op::Ret(BAD_ARCH.ret()));
    for ((_, archs), l) in tokens.iter().zip(&labels) {
        asm.mark(*l);
        asm.push(Op::Ld(OFF_NR));
        if archs.iter().any(|a| matches!(a, Arch::X86_64 | Arch::X32)) {
            let x32 = asm.label();
            asm.push(Op::Cond(JSET_K, X32_SYSCALL_BIT, Jump::To(x32), Jump::Next));
            if archs.contains(&Arch::X86_64) {
                body(&mut asm, Arch::X86_64, p, enosys)
            } else {
                asm.push(Op::Ret(BAD_ARCH.ret()))
            }
            asm.mark(x32);
            if archs.contains(&Arch::X32) {
                body(&mut asm, Arch::X32, p, enosys)
            } else {
                asm.push(Op::Ret(BAD_ARCH.ret()))
            }
        } else {
            body(&mut asm, archs[0], p, enosys);
        }
    }
    Ok(asm.assemble()?)
}

/// The rules of one ABI; the syscall number is in the accumulator.
fn body(asm: &mut Asm, arch: Arch, p: &Profile, enosys: bool) {
    // (number, rule index), sorted: the rules of each syscall in profile order. Names this ABI
    // lacks are skipped (Docker's profile names calls of every ISA).
    let mut pairs: Vec<(u32, usize)> =
        Vec::with_capacity(p.rules.iter().map(|r| r.names.len()).sum());
    for (i, r) in p.rules.iter().enumerate() {
        pairs.extend(
            r.names
                .iter()
                .filter_map(|n| arch.syscall_nr(n))
                .map(|nr| (nr, i)),
        );
    }
    pairs.sort_unstable();
    pairs.dedup();
    let stub =
        (enosys && !p.default_action.lets_through() && !pairs.is_empty()).then(|| asm.label());
    if let Some(stub) = stub {
        if matches!(arch, Arch::S390 | Arch::S390x) && pairs[0].0 != 0 {
            asm.push(Op::Cond(JEQ_K, 0, Jump::To(stub), Jump::Next));
        }
        asm.push(Op::Cond(
            JGT_K,
            pairs[pairs.len() - 1].0,
            Jump::To(stub),
            Jump::Next,
        ));
    }
    // The numbers 0..=max (and on past max when there is no ENOSYS stub) as runs of one
    // outcome: a syscall with argument checks is a run of its own, and neighbours with the same
    // plain action merge. A binary search over the runs returns in place, so the program stays
    // small (about two instructions per run) and needs few long jumps.
    let default = Outcome::Ret(p.default_action.ret());
    let mut runs: Vec<(u32, Outcome)> = Vec::new();
    let mut push = |start: u32, o: Outcome| {
        if !runs
            .last()
            .is_some_and(|(_, last)| *last == o && !matches!(o, Outcome::Checks(..)))
        {
            runs.push((start, o));
        }
    };
    let mut next = 0u32;
    let mut at = 0;
    while at < pairs.len() {
        let nr = pairs[at].0;
        let end = at + pairs[at..].iter().take_while(|(n, _)| *n == nr).count();
        if nr > next {
            push(next, default);
        }
        let rules = &pairs[at..end];
        if rules.iter().any(|(_, i)| !p.rules[*i].args.is_empty()) {
            push(nr, Outcome::Checks(at, end));
        } else {
            push(nr, Outcome::Ret(p.rules[rules[0].1].action.ret()));
        }
        next = nr.saturating_add(1);
        at = end;
    }
    if stub.is_none() || pairs.is_empty() {
        push(next, default);
    }
    search(asm, arch, p, &pairs, &runs);
    if let Some(stub) = stub {
        asm.mark(stub);
        asm.push(Op::Ret(Action::Errno(arch.enosys() as u16).ret()));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ret(u32),
    /// The conditional rules of one syscall: a range of the (number, rule) pairs.
    Checks(usize, usize),
}

/// Binary search over the runs (each `(first number, outcome)`); the accumulator holds the
/// syscall number.
fn search(asm: &mut Asm, arch: Arch, p: &Profile, pairs: &[(u32, usize)], runs: &[(u32, Outcome)]) {
    if let [(_, outcome)] = runs {
        match *outcome {
            Outcome::Ret(r) => asm.push(Op::Ret(r)),
            Outcome::Checks(from, to) => checks(
                asm,
                arch,
                p,
                pairs[from..to].iter().map(|(_, i)| &p.rules[*i]),
            ),
        }
        return;
    }
    let mid = runs.len() / 2;
    let right = asm.label();
    asm.push(Op::Cond(JGE_K, runs[mid].0, Jump::To(right), Jump::Next));
    search(asm, arch, p, pairs, &runs[..mid]);
    asm.mark(right);
    search(asm, arch, p, pairs, &runs[mid..]);
}

/// Conditional rules first, in profile order: the more specific rule decides when its arguments
/// match, an unconditional one otherwise.
fn checks<'a>(
    asm: &mut Asm,
    arch: Arch,
    p: &Profile,
    rules: impl Iterator<Item = &'a Rule> + Clone,
) {
    for r in rules.clone().filter(|r| !r.args.is_empty()) {
        let next = asm.label();
        for c in &r.args {
            cmp(asm, arch, c, next);
        }
        asm.push(Op::Ret(r.action.ret()));
        asm.mark(next);
    }
    let fallback = rules
        .into_iter()
        .find(|r| r.args.is_empty())
        .map_or(p.default_action, |r| r.action);
    asm.push(Op::Ret(fallback.ret()));
}

/// One argument comparison: falls through when it holds, jumps to `fail` otherwise.
fn cmp(asm: &mut Asm, arch: Arch, c: &ArgCmp, fail: Label) {
    let base = OFF_ARGS + 8 * u32::from(c.index);
    let (lo, hi) = match arch.endian() {
        Endian::Little => (base, base + 4),
        Endian::Big => (base + 4, base),
    };
    let (vhi, vlo) = ((c.value >> 32) as u32, c.value as u32);
    // libseccomp (and so runc) compares with the datum's masked bits only.
    let datum = c.value_two & c.value;
    let (dhi, dlo) = ((datum >> 32) as u32, datum as u32);
    let (next, to_fail) = (Jump::Next, Jump::To(fail));
    if arch.args_are_32bit() {
        // 32-bit ABIs pass 32-bit arguments: only the low word counts.
        asm.push(Op::Ld(lo));
        match c.op {
            CmpOp::Eq => asm.push(Op::Cond(JEQ_K, vlo, next, to_fail)),
            CmpOp::Ne => asm.push(Op::Cond(JEQ_K, vlo, to_fail, next)),
            CmpOp::Gt => asm.push(Op::Cond(JGT_K, vlo, next, to_fail)),
            CmpOp::Ge => asm.push(Op::Cond(JGE_K, vlo, next, to_fail)),
            CmpOp::Lt => asm.push(Op::Cond(JGE_K, vlo, to_fail, next)),
            CmpOp::Le => asm.push(Op::Cond(JGT_K, vlo, to_fail, next)),
            CmpOp::MaskedEq => {
                asm.push(Op::And(vlo));
                asm.push(Op::Cond(JEQ_K, dlo, next, to_fail));
            }
        }
        return;
    }
    let pass = asm.label();
    let to_pass = Jump::To(pass);
    asm.push(Op::Ld(hi));
    match c.op {
        CmpOp::Eq => {
            asm.push(Op::Cond(JEQ_K, vhi, next, to_fail));
            asm.push(Op::Ld(lo));
            asm.push(Op::Cond(JEQ_K, vlo, next, to_fail));
        }
        CmpOp::Ne => {
            asm.push(Op::Cond(JEQ_K, vhi, next, to_pass));
            asm.push(Op::Ld(lo));
            asm.push(Op::Cond(JEQ_K, vlo, to_fail, next));
        }
        CmpOp::Gt | CmpOp::Ge => {
            asm.push(Op::Cond(JGT_K, vhi, to_pass, next));
            asm.push(Op::Cond(JEQ_K, vhi, next, to_fail));
            asm.push(Op::Ld(lo));
            let code = if c.op == CmpOp::Gt { JGT_K } else { JGE_K };
            asm.push(Op::Cond(code, vlo, next, to_fail));
        }
        CmpOp::Lt | CmpOp::Le => {
            asm.push(Op::Cond(JGT_K, vhi, to_fail, next));
            asm.push(Op::Cond(JEQ_K, vhi, next, to_pass));
            asm.push(Op::Ld(lo));
            let code = if c.op == CmpOp::Lt { JGE_K } else { JGT_K };
            asm.push(Op::Cond(code, vlo, to_fail, next));
        }
        CmpOp::MaskedEq => {
            asm.push(Op::And(vhi));
            asm.push(Op::Cond(JEQ_K, dhi, next, to_fail));
            asm.push(Op::Ld(lo));
            asm.push(Op::And(vlo));
            asm.push(Op::Cond(JEQ_K, dlo, next, to_fail));
        }
    }
    asm.mark(pass);
}

#[cfg(test)]
pub(crate) mod tests;
