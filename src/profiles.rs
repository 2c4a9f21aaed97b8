//! The profiles shipped in the binary (see profiles/README.md).

use chitin_arch::Arch;
use serde_json::Value;

const DOCKER_DEFAULT: &str = include_str!("../profiles/docker-default.json");

/// The names `spec --seccomp` takes.
pub const SECCOMP_PROFILES: &[&str] = &["docker-default"];

/// A seccomp profile resolved for `native`: the entries for this host, the host's ABIs as the
/// architectures, and plain OCI fields only.
pub fn seccomp(name: &str, native: Arch) -> Option<Value> {
    let text = match name {
        "docker-default" => DOCKER_DEFAULT,
        _ => return None,
    };
    let v: Value = serde_json::from_str(text).expect("the shipped profile is JSON");
    Some(for_host(v, native))
}

/// A seccomp object of profiles/ resolved for `native`: the entries whose `chitinHosts` is
/// absent or names it, without the field, and the host's ABIs as the architectures.
pub fn for_host(mut v: Value, native: Arch) -> Value {
    let host = Value::from(native.oci_name());
    if let Some(list) = v["syscalls"].as_array_mut() {
        list.retain(|s| {
            s.get("chitinHosts")
                .and_then(Value::as_array)
                .is_none_or(|h| h.contains(&host))
        });
        for s in list.iter_mut() {
            s.as_object_mut().expect("object").remove("chitinHosts");
        }
    }
    let archs: Vec<Value> = std::iter::once(native)
        .chain(native.compat().iter().copied())
        .map(|a| a.oci_name().into())
        .collect();
    v["architectures"] = Value::Array(archs);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_resolves_per_host() {
        for native in Arch::HOSTS {
            let v = seccomp("docker-default", native).unwrap();
            let p = crate::seccomp::from_json(v.clone()).unwrap();
            assert_eq!(p.archs[0], native);
            let clones: Vec<&crate::seccomp::Rule> =
                p.rules.iter().filter(|r| r.names == ["clone"]).collect();
            assert_eq!(clones.len(), 1, "{native:?}: one clone rule");
            let flags_arg = if native == Arch::S390x { 1 } else { 0 };
            assert_eq!(clones[0].args[0].index, flags_arg, "{native:?}");
            assert!(!v.to_string().contains("chitinHosts"));
            // Compiles for every ABI of the host, within the kernel's limit.
            let prog = crate::seccomp::compile::compile(&p).unwrap();
            assert!(prog.len() < 4096);
        }
        let x = seccomp("docker-default", Arch::X86_64).unwrap().to_string();
        assert!(
            x.contains("arch_prctl")
                && !x.contains("s390_pci_mmio_read")
                && !x.contains("io_uring_setup")
        );
    }
}
