//! A second dockerd, with `--userns-remap`: a container's root is the host's 100000, and a
//! container with `--network container:X` joins another's user and network namespaces by path.

use std::sync::OnceLock;

use super::docker::{Docker, IMAGE, docker};
use super::{ok, run, sandbox};
use crate::harness::{TestResult, at_exit};

/// A second dockerd, with `--userns-remap` (containers' root is the host's 100000): the
/// sandbox's /etc/subuid and /etc/subgid give the "daemon" user that range.
fn docker_userns() -> Result<&'static Docker, crate::harness::Outcome> {
    docker()?;
    static D: OnceLock<Docker> = OnceLock::new();
    Ok(D.get_or_init(|| {
        let sb = sandbox();
        for f in ["subuid", "subgid"] {
            let ours = sb.dir.join(f);
            std::fs::write(&ours, "daemon:100000:65536\n").unwrap();
            ok(sb
                .cmd("mount")
                .arg("--bind")
                .arg(&ours)
                .arg(format!("/etc/{f}")));
        }
        let d = Docker::start(sb, "dockerd", "docker-userns", &["--userns-remap=daemon"]);
        at_exit(|| {
            if let Ok(d) = docker_userns() {
                d.stop();
            }
        });
        d
    }))
}

/// `--userns-remap` with `--network container:X`: the second container joins the first's user
/// and network namespaces by path, with the same mappings in its config; they talk over
/// 127.0.0.1.
pub fn userns_remap_and_network_container() -> TestResult {
    let d = docker_userns()?;
    let first = ok(d
        .cli()
        .args(["run", "-d", IMAGE, "sh", "-c"])
        .arg("while :; do echo pong | nc -l -p 8080 127.0.0.1; done"))
    .trim()
    .to_owned();
    let r = run(d.cli().args(["run", "--rm", "--network"])
        .arg(format!("container:{first}"))
        .args([IMAGE, "sh", "-c"])
        .arg("cat /proc/self/uid_map; readlink /proc/self/ns/net; for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 8080 </dev/null && break; sleep 0.2; done"));
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{}",
        r.out
    );
    let pid = d.inspect(&first, "{{.State.Pid}}");
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        lines[1],
        net.to_str().unwrap(),
        "the first's network namespace"
    );
    assert_eq!(lines.get(2), Some(&"pong"), "{}", r.out);
    ok(d.cli().args(["rm", "-f", &first]));
    Ok(())
}
